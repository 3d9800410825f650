//! Distinct users per command and window: a [`UserSketch`] per `(command, context, window)`,
//! fed with every accepted command event that names a user, before the sampler decides (so
//! sampling never biases the count), and handed to the writer as [`UserWindow`]s.
//!
//! Because sketches merge by register maximum (adding an id twice changes nothing), a window's
//! sketch can be written any number of times: the store merges each write into its row. So a
//! window is written when the clock passes its end plus the lateness (`Tick`), and every open
//! one on `Flush`, `Checkpoint` (durable mode: what the journal no longer holds is in the
//! store) and `Shutdown`; a late event opens a fresh sketch that merges into the same row; a
//! replayed journal re-adds ids the row already holds. Nothing is counted twice, nothing lost.

use std::collections::BTreeMap;

use crate::event::{EventKind, TrackEvent};
use crate::stats::hll::UserSketch;
use crate::text::Text;

/// One window's sketch of a command's users, bound for `command_users`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UserWindow {
    /// The command's name.
    pub command: String,
    /// The command's context (`""` when it has none).
    pub context: String,
    /// Start of the window (or of the roll-up bucket, in the store), ms since the epoch.
    pub start_ms: i64,
    /// The window's width (the aggregation window).
    pub window_ms: i64,
    /// The users seen in it.
    pub sketch: UserSketch,
}

/// The open user sketches.
#[derive(Debug)]
pub(crate) struct DistinctUsers {
    window_ms: i64,
    lateness_ms: i64,
    /// Most sketches open at once; at the limit every open one is handed on (written, merged
    /// later), so memory stays bounded and nothing is lost.
    max_open: usize,
    /// By command, context and window start; `Text` keys, so counting a command with a short
    /// name allocates nothing once its window's sketch is open.
    open: BTreeMap<(Text, Text, i64), UserSketch>,
}

impl DistinctUsers {
    /// Sketches of `window_ms` windows, written `lateness_ms` after their end, at most
    /// `max_open` open.
    pub(crate) fn new(window_ms: i64, lateness_ms: i64, max_open: usize) -> Self {
        DistinctUsers {
            window_ms: window_ms.max(1),
            lateness_ms,
            max_open: max_open.max(1),
            open: BTreeMap::new(),
        }
    }

    /// New lateness and limit (`Configure`).
    pub(crate) fn set_limits(&mut self, lateness_ms: i64, max_open: usize) {
        self.lateness_ms = lateness_ms;
        self.max_open = max_open.max(1);
    }

    /// Adds the user of a command event (validated and pseudonymised: the id is what the
    /// store would hold). Other events, and commands without a user, are not counted. When the
    /// open sketches reach the limit, every one is moved to `out`.
    #[inline]
    pub(crate) fn observe(&mut self, event: &TrackEvent, out: &mut Vec<UserWindow>) {
        if event.kind == EventKind::Command {
            self.observe_command(event, out);
        }
    }

    /// [`DistinctUsers::observe`] of a command.
    fn observe_command(&mut self, event: &TrackEvent, out: &mut Vec<UserWindow>) {
        let (Some(user), Some(ts)) = (&event.user, event.ts_ms) else {
            return;
        };
        let start = ts.div_euclid(self.window_ms) * self.window_ms;
        let context = event.context.as_deref().unwrap_or("");
        let key = (event.name.clone(), Text::from(context), start);
        if let Some(sketch) = self.open.get_mut(&key) {
            // an open window: one lookup
            sketch.insert(user.as_bytes());
            return;
        }
        if self.open.len() >= self.max_open {
            log::info!(
                "{} user sketches open: writing them all early (they merge in the store)",
                self.open.len()
            );
            self.take_all(out);
        }
        self.open.entry(key).or_default().insert(user.as_bytes());
    }

    /// Moves the sketches whose window ended `lateness_ms` or more before `now_ms` to `out`.
    pub(crate) fn take_due(&mut self, now_ms: i64, out: &mut Vec<UserWindow>) {
        let due: Vec<_> = self
            .open
            .keys()
            .filter(|(_, _, start)| {
                start
                    .saturating_add(self.window_ms)
                    .saturating_add(self.lateness_ms)
                    <= now_ms
            })
            .cloned()
            .collect();
        for key in due {
            if let Some(sketch) = self.open.remove(&key) {
                out.push(self.window(key, sketch));
            }
        }
    }

    /// Moves every open sketch to `out`.
    pub(crate) fn take_all(&mut self, out: &mut Vec<UserWindow>) {
        for (key, sketch) in std::mem::take(&mut self.open) {
            out.push(self.window(key, sketch));
        }
    }

    /// Copies of the open sketches of `command` (any context when `context` is `None`).
    pub(crate) fn open_matching(&self, command: &str, context: Option<&str>) -> Vec<UserWindow> {
        self.open
            .iter()
            .filter(|((c, ctx, _), _)| {
                c.as_str() == command && context.is_none_or(|x| x == ctx.as_str())
            })
            .map(|(key, sketch)| self.window(key.clone(), sketch.clone()))
            .collect()
    }

    /// Sketches open.
    #[cfg(test)]
    fn open_count(&self) -> usize {
        self.open.len()
    }

    fn window(
        &self,
        (command, context, start_ms): (Text, Text, i64),
        sketch: UserSketch,
    ) -> UserWindow {
        UserWindow {
            command: command.into(),
            context: context.into(),
            start_ms,
            window_ms: self.window_ms,
            sketch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(name: &str, user: &str, ts: i64) -> TrackEvent {
        let mut e = TrackEvent::command(name).user(user);
        e.ts_ms = Some(ts);
        e
    }

    #[test]
    fn users_are_counted_per_command_and_window_and_written_when_due() {
        let mut d = DistinctUsers::new(60_000, 5_000, 100);
        let mut out = Vec::new();
        for (name, user, ts) in [
            ("help", "a", 1_000),
            ("help", "a", 2_000),
            ("help", "b", 3_000),
            ("ban", "a", 4_000),
            ("help", "c", 61_000),
        ] {
            d.observe(&cmd(name, user, ts), &mut out);
        }
        d.observe(&TrackEvent::command("help"), &mut out); // no user: not counted
        d.observe(&TrackEvent::custom("help").user("z"), &mut out); // not a command
        assert_eq!(d.open_count(), 3);
        d.take_due(64_999, &mut out);
        assert!(out.is_empty());
        d.take_due(65_000, &mut out);
        out.sort_by(|a, b| a.command.cmp(&b.command));
        let counts: Vec<_> = out
            .iter()
            .map(|w| (w.command.as_str(), w.start_ms, w.sketch.count()))
            .collect();
        assert_eq!(counts, [("ban", 0, 1), ("help", 0, 2)]);
        assert_eq!(d.open_matching("help", None).len(), 1);
        out.clear();
        d.take_all(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].start_ms, 60_000);
        assert_eq!(d.open_count(), 0);
    }

    #[test]
    fn at_the_limit_every_open_sketch_is_handed_on_and_none_lost() {
        let mut d = DistinctUsers::new(1_000, 0, 2);
        let mut out = Vec::new();
        for i in 0..5 {
            d.observe(&cmd("c", "u", i * 1_000), &mut out);
        }
        assert!(d.open_count() <= 2);
        d.take_all(&mut out);
        let mut starts: Vec<_> = out.iter().map(|w| w.start_ms).collect();
        starts.sort_unstable();
        assert_eq!(starts, [0, 1_000, 2_000, 3_000, 4_000]);
    }
}
