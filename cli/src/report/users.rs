//! The report's distinct users: one table row per command and window (or hour, day or week),
//! the newest first, from the store's HyperLogLog sketches (`eventbatch::QueryUsers`).

use std::fmt::Write as _;

use eventbatch::{PipelineError, QueryUsers, Resolution, StoreReader, UserCount};

use super::escape::esc;
use super::scale::format_time;

/// Rows shown per command, the newest.
pub const ROWS_PER_COMMAND: usize = 50;

/// One command's distinct users in the report's range.
#[derive(Debug, Clone)]
pub struct CommandUsers {
    /// The command's name.
    pub command: String,
    /// Its windows (or buckets) with users, by start.
    pub counts: Vec<UserCount>,
}

/// Reads every command's distinct users in `[from_ms, to_ms)` at `resolution`.
pub fn load(
    reader: &StoreReader,
    from_ms: i64,
    to_ms: i64,
    resolution: Resolution,
) -> Result<Vec<CommandUsers>, PipelineError> {
    let mut out = Vec::new();
    for command in reader.user_commands()? {
        let q = QueryUsers::command(&command)
            .between(from_ms, to_ms)
            .resolution(resolution);
        let counts = reader.users(&q)?;
        if !counts.is_empty() {
            out.push(CommandUsers { command, counts });
        }
    }
    Ok(out)
}

/// The "Distinct users" section: nothing when no command named a user.
pub fn section(html: &mut String, users: &[CommandUsers], resolution: Resolution) {
    if users.is_empty() {
        return;
    }
    let bucket = match resolution {
        Resolution::Hour => "hour",
        Resolution::Day => "day",
        Resolution::Week => "week",
        _ => "window",
    };
    let _ = writeln!(
        html,
        "<section id=\"users\">\n<h2>Distinct users</h2>\n<p>Distinct users of each command per {}, counted before sampling (HyperLogLog: within 2% at a million users, near exact for a few); with an identity key, distinct pseudonyms. Newest first, at most {ROWS_PER_COMMAND} a command.</p>",
        bucket
    );
    html.push_str(
        "<table>\n<thead><tr><th>command</th><th>start (UTC)</th><th class=\"num\">distinct users</th></tr></thead>\n<tbody>\n",
    );
    for c in users {
        for n in c.counts.iter().rev().take(ROWS_PER_COMMAND) {
            let _ = writeln!(
                html,
                "<tr class=\"users\"><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(&c.command),
                format_time(n.start_ms),
                n.users
            );
        }
    }
    html.push_str("</tbody>\n</table>\n</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_lists_each_command_newest_first_and_escapes_names() {
        let count = |start_ms, users| UserCount {
            start_ms,
            width_ms: 60_000,
            users,
            estimate: users as f64,
        };
        let users = vec![CommandUsers {
            command: "<b>help".into(),
            counts: vec![count(0, 3), count(60_000, 7)],
        }];
        let mut html = String::new();
        section(&mut html, &users, Resolution::Window);
        assert!(html.contains("&lt;b&gt;help"));
        let (seven, three) = (html.find(">7<").unwrap(), html.find(">3<").unwrap());
        assert!(seven < three, "newest first");
        let mut empty = String::new();
        section(&mut empty, &[], Resolution::Day);
        assert!(empty.is_empty());
    }
}
