//! Events and their cooldown: one finding per event, and one event never hides another.
//!
//! An alarm opens an *event* on its side (above or below the expected value) with its
//! deviation from the expected value. The event lasts while the series stays disturbed: it
//! ends once `event_gap` values in a row were ordinary (neither an alarm nor `anomaly_sigma`
//! standard deviations out), or after `cooldown` values at most. While it lasts, its values
//! are damped (score times `cooldown_factor`) and raise no finding. A value that alarms on the
//! other side, or with at least twice the event's largest deviation, is a new event: it is
//! reported, keeps its score and starts its own. After the event, the guide's rules apply in
//! full again: a later spike is judged as if the event had not happened.

use super::detector_settings::DetectorSettings;

/// Which side of the expected value an event is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Above,
    Below,
}

/// The event opened by the last alarm, while it lasts.
#[derive(Debug, Clone, Copy)]
struct Event {
    side: Side,
    /// Largest `|observed - expected|` seen in the event.
    peak: f64,
    /// Values left before the event ends whatever follows.
    left: u32,
    /// Ordinary values in a row.
    quiet: u32,
}

/// How one judged value stands towards the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// No event: the value keeps its score and raises nothing.
    Clear,
    /// The value alarms and is a new event: reported, with its score.
    Opens,
    /// The value belongs to the event under way: damped, not reported.
    Continues,
    /// The event under way ended on this value (it was ordinary): scored as judged.
    Ends,
}

/// The event state of one series (at most one event at a time).
#[derive(Debug, Clone, Default)]
pub(super) struct Events {
    event: Option<Event>,
}

impl Events {
    /// Places a judged value: `alarm` when it clears the alarm bar, `ordinary` when it is
    /// neither an alarm nor `anomaly_sigma` out.
    pub(super) fn place(
        &mut self,
        s: &DetectorSettings,
        value: f64,
        expected: f64,
        alarm: bool,
        ordinary: bool,
    ) -> Outcome {
        let deviation = (value - expected).abs();
        let side = if value >= expected {
            Side::Above
        } else {
            Side::Below
        };
        if let Some(e) = self.event.as_mut() {
            e.left = e.left.saturating_sub(1);
            e.quiet = if ordinary { e.quiet + 1 } else { 0 };
            if alarm && (e.side != side || deviation >= 2.0 * e.peak) {
                // A distinct event: reported below.
            } else if e.left == 0 || e.quiet as usize >= s.event_gap.max(1) {
                self.event = None;
                return if alarm {
                    self.open(s, side, deviation)
                } else {
                    Outcome::Ends
                };
            } else {
                if e.side == side {
                    e.peak = e.peak.max(deviation);
                }
                return Outcome::Continues;
            }
        }
        if alarm {
            self.open(s, side, deviation)
        } else {
            Outcome::Clear
        }
    }

    fn open(&mut self, s: &DetectorSettings, side: Side, deviation: f64) -> Outcome {
        self.event = (s.cooldown > 0).then_some(Event {
            side,
            peak: deviation,
            left: s.cooldown as u32,
            quiet: 0,
        });
        Outcome::Opens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_lasts_while_the_series_is_disturbed_then_ends() {
        let s = DetectorSettings {
            event_gap: 3,
            ..DetectorSettings::default()
        };
        let mut e = Events::default();
        assert_eq!(e.place(&s, 300.0, 100.0, true, false), Outcome::Opens);
        // disturbed: the same event
        assert_eq!(e.place(&s, 250.0, 100.0, true, false), Outcome::Continues);
        assert_eq!(e.place(&s, 101.0, 100.0, false, true), Outcome::Continues);
        assert_eq!(e.place(&s, 101.0, 100.0, false, true), Outcome::Continues);
        assert_eq!(e.place(&s, 101.0, 100.0, false, true), Outcome::Ends);
        // a second identical spike is an event of its own
        assert_eq!(e.place(&s, 300.0, 100.0, true, false), Outcome::Opens);
        // the other side, or twice as far, is a new event at once
        assert_eq!(e.place(&s, 20.0, 100.0, true, false), Outcome::Opens);
        assert_eq!(e.place(&s, -200.0, 100.0, true, false), Outcome::Opens);
        // cooldown bounds an event that never calms down
        let s = DetectorSettings { cooldown: 2, ..s };
        let mut e = Events::default();
        assert_eq!(e.place(&s, 300.0, 100.0, true, false), Outcome::Opens);
        assert_eq!(e.place(&s, 300.0, 100.0, true, false), Outcome::Continues);
        assert_eq!(e.place(&s, 300.0, 100.0, true, false), Outcome::Opens);
    }
}
