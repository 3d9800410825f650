//! Loading a [`Config`] from a TOML file and from `EVENTBATCH_*` environment variables, with the
//! same validation (and the same [`ConfigError`]s) as [`Config::validate`].
//!
//! ```
//! let config = eventbatch::Config::from_toml_str("max_batch_size = 500\n[detection]\nspike_ratio = 3.0\n")?;
//! assert_eq!(config.max_batch_size, 500);
//! let config = config.with_overrides([("EVENTBATCH_BATCH_INTERVAL_MS", "250")])?;
//! assert_eq!(config.batch_interval_ms, 250);
//! # Ok::<(), eventbatch::ConfigError>(())
//! ```

use std::path::Path;

use crate::config::Config;
use crate::error::ConfigError;

/// The prefix of the environment variables [`Config::with_env_overrides`] reads.
pub const ENV_PREFIX: &str = "EVENTBATCH_";

/// Fields that hold text and are absent from a serialized default (`None`).
const OPTIONAL_TEXT: [&str; 3] = ["instance_id", "identity_key", "journal_path"];

impl Config {
    /// A configuration from TOML text: every field optional (defaults as [`Config::default`]),
    /// unknown fields refused, then validated.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text)
            .map_err(|e| ConfigError::new("config", "(TOML)", e.message().to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// [`Config::from_toml_str`] of a file's content.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("config file", path.display(), e.to_string()))?;
        Config::from_toml_str(&text).map_err(|e| match e.field.as_str() {
            "config" => ConfigError::new("config file", path.display(), e.reason),
            _ => e,
        })
    }

    /// This configuration as TOML, every field with its value (the key is never written:
    /// `identity_key`, when set, is [`crate::REDACTED_KEY`]).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// This configuration with the `EVENTBATCH_*` environment variables applied, then validated:
    /// `EVENTBATCH_MAX_BATCH_SIZE=500`, `EVENTBATCH_DETECTION_SPIKE_RATIO=3`,
    /// `EVENTBATCH_SAMPLING_RATES='{ "help" = 0.1 }'` (a TOML inline table).
    ///
    /// Other variables are not read, whatever they hold (`std::env::vars` would panic on one
    /// that is not Unicode). An `EVENTBATCH_*` variable whose value is not Unicode is a
    /// [`ConfigError`] naming it, with its length, not its value.
    pub fn with_env_overrides(self) -> Result<Config, ConfigError> {
        let vars = ours(std::env::vars_os())?;
        self.with_overrides(vars)
    }

    /// [`Config::with_env_overrides`] with the variables given (name, value). An error names
    /// the variable and what is wrong, never its value (a variable may hold a secret).
    pub fn with_overrides<K: AsRef<str>, V: AsRef<str>>(
        self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Config, ConfigError> {
        let mut table = toml::Table::try_from(&self)
            .map_err(|e| ConfigError::new("config", "(current)", e.to_string()))?;
        for (name, value) in vars {
            let (name, value) = (name.as_ref(), value.as_ref());
            let Some(key) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            set(&mut table, &key, name, value)?;
        }
        let mut config: Config = table.try_into().map_err(|e: toml::de::Error| {
            ConfigError::new("config", "(environment)", e.message().to_string())
        })?;
        // the key went through the table redacted: keep this one unless a variable set it
        if config.identity_key.as_deref() == Some(crate::config::REDACTED_KEY) {
            config.identity_key = self.identity_key;
        }
        config.validate()?;
        Ok(config)
    }
}

/// The `EVENTBATCH_*` variables among `vars`, as text; the others are skipped unread.
fn ours(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (name, value) in vars {
        if !name.as_encoded_bytes().starts_with(ENV_PREFIX.as_bytes()) {
            continue;
        }
        let name = name.into_string().map_err(|name| {
            ConfigError::new(
                name.to_string_lossy(),
                "(not read)",
                "the variable's name is not valid Unicode",
            )
        })?;
        let value = value.into_string().map_err(|value| {
            ConfigError::new(
                &name,
                format!("<{} bytes, not shown>", value.len()),
                "the value is not valid Unicode",
            )
        })?;
        out.push((name, value));
    }
    Ok(out)
}

/// The sections of a [`Config`] (tables in TOML) whose fields `EVENTBATCH_<SECTION>_<FIELD>`
/// sets.
const SECTIONS: [&str; 2] = ["detection", "retention"];

/// Sets `key` (a top-level field, or `<section>_<field>` of a [`SECTIONS`] table) from an
/// environment value, typed like the field it replaces.
fn set(table: &mut toml::Table, key: &str, name: &str, value: &str) -> Result<(), ConfigError> {
    if OPTIONAL_TEXT.contains(&key) {
        table.insert(key.to_string(), toml::Value::String(value.to_string()));
        return Ok(());
    }
    if key == "forward" {
        // absent from a serialized default: `{ url = "nats://...", stream = "events" }`
        let parsed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .filter(toml::Value::is_table)
            .ok_or_else(|| bad(name, key, value))?;
        table.insert(key.to_string(), parsed);
        return Ok(());
    }
    if let Some(current) = table.get(key) {
        let parsed = typed_like(current, value).ok_or_else(|| bad(name, key, value))?;
        table.insert(key.to_string(), parsed);
        return Ok(());
    }
    for section in SECTIONS {
        let Some(field) = key
            .strip_prefix(section)
            .and_then(|rest| rest.strip_prefix('_'))
        else {
            continue;
        };
        if let Some(toml::Value::Table(fields)) = table.get_mut(section) {
            if let Some(current) = fields.get(field) {
                let parsed = typed_like(current, value).ok_or_else(|| bad(name, key, value))?;
                fields.insert(field.to_string(), parsed);
                return Ok(());
            }
        }
    }
    Err(ConfigError::new(
        name,
        not_shown(value),
        "no such configuration field",
    ))
}

fn bad(name: &str, key: &str, value: &str) -> ConfigError {
    ConfigError::new(
        name,
        not_shown(value),
        format!("not a valid value for {key}"),
    )
}

/// An environment value in an error: its length only (a variable may hold a secret, e.g. a
/// mistyped `EVENTBATCH_IDENTITY_KEY`).
fn not_shown(value: &str) -> String {
    format!("<{} bytes, not shown>", value.len())
}

/// `value` parsed as the same TOML type as `current`.
fn typed_like(current: &toml::Value, value: &str) -> Option<toml::Value> {
    use toml::Value as V;
    Some(match current {
        V::Integer(_) => V::Integer(value.trim().parse().ok()?),
        V::Float(_) => V::Float(value.trim().parse().ok()?),
        V::Boolean(_) => V::Boolean(value.trim().parse().ok()?),
        V::String(_) => V::String(value.to_string()),
        V::Table(_) => {
            let wrapped: toml::Table = toml::from_str(&format!("v = {value}")).ok()?;
            wrapped.get("v")?.clone()
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_round_trips_through_toml() {
        let config = Config {
            max_batch_size: 250,
            instance_id: Some("api-1".into()),
            ..Config::default()
        };
        let text = config.to_toml();
        assert_eq!(Config::from_toml_str(&text).unwrap().max_batch_size, 250);
        assert!(Config::from_toml_str(&Config::default().to_toml()).is_ok());
    }

    #[test]
    fn files_are_validated_like_code() {
        let e = Config::from_toml_str("max_batch_size = 0").unwrap_err();
        assert_eq!(e.field, "max_batch_size");
        let e = Config::from_toml_str("max_batch_sise = 10").unwrap_err();
        assert!(e.reason.contains("max_batch_sise"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eventbatch.toml");
        std::fs::write(
            &path,
            "batch_interval_ms = 250\n[sampling_rates]\nhelp = 0.5\n",
        )
        .unwrap();
        let c = Config::from_toml_file(&path).unwrap();
        assert_eq!((c.batch_interval_ms, c.sampling_rates["help"]), (250, 0.5));
        let e = Config::from_toml_file(dir.path().join("missing.toml")).unwrap_err();
        assert_eq!(e.field, "config file");
    }

    #[test]
    fn environment_overrides_are_typed_and_validated() {
        let c = Config::default()
            .with_overrides([
                ("EVENTBATCH_MAX_BATCH_SIZE", "500"),
                ("EVENTBATCH_ROLLUPS", "false"),
                ("EVENTBATCH_DETECTION_SPIKE_RATIO", "3.5"),
                ("EVENTBATCH_RETENTION_EVENTS_MAX_AGE_MS", "86400000"),
                ("EVENTBATCH_RETENTION_BATCH_SIZE", "250"),
                ("EVENTBATCH_INSTANCE_ID", "api-2"),
                ("EVENTBATCH_SAMPLING_RATES", "{ \"help\" = 0.25 }"),
                ("EVENTBATCH_DURABLE", "true"),
                ("EVENTBATCH_JOURNAL_PATH", "/var/lib/app/events.journal"),
                ("EVENTBATCH_FSYNC_INTERVAL_MS", "50"),
                ("OTHER_VAR", "ignored"),
            ])
            .unwrap();
        assert!(c.durable);
        assert_eq!(
            c.journal_path.as_deref(),
            Some(Path::new("/var/lib/app/events.journal"))
        );
        assert_eq!(c.fsync_interval_ms, 50);
        assert_eq!(c.max_batch_size, 500);
        assert!(!c.rollups);
        assert_eq!(c.detection.spike_ratio, 3.5);
        assert_eq!(c.retention.events_max_age_ms, 86_400_000);
        assert_eq!(c.retention.batch_size, 250);
        assert_eq!(c.instance_id.as_deref(), Some("api-2"));
        assert_eq!(c.sampling_rates["help"], 0.25);
        let e = Config::default()
            .with_overrides([("EVENTBATCH_MAX_BATCH_SIZE", "lots")])
            .unwrap_err();
        assert_eq!(e.field, "EVENTBATCH_MAX_BATCH_SIZE");
        let e = Config::default()
            .with_overrides([("EVENTBATCH_MAX_BATCH_SIZE", "0")])
            .unwrap_err();
        assert_eq!(e.field, "max_batch_size");
        let e = Config::default()
            .with_overrides([("EVENTBATCH_NO_SUCH", "1")])
            .unwrap_err();
        assert!(e.reason.contains("no such"));
        let e = Config::default()
            .with_overrides([("EVENTBATCH_RETENTION_BATCH_SIZE", "0")])
            .unwrap_err();
        assert_eq!(e.field, "retention.batch_size");
        let e = Config::default()
            .with_overrides([("EVENTBATCH_RETENTION_NO_SUCH", "1")])
            .unwrap_err();
        assert!(e.reason.contains("no such"));
    }

    #[test]
    fn sampling_options_and_the_batching_switch_from_toml_and_environment() {
        use crate::config::SampleBy;
        let c = Config::from_toml_str(
            "batching = false\n\
             [sampling_targets]\n\"performance.rt\" = 1000.0\n\
             [sampling_by]\nhelp = \"user\"\ncheckout = { tag = \"plan\" }\n",
        )
        .unwrap();
        assert!(!c.batching);
        assert_eq!(c.sampling_targets["performance.rt"], 1000.0);
        assert_eq!(c.sampling_by["help"], SampleBy::User);
        assert_eq!(c.sampling_by["checkout"], SampleBy::Tag("plan".into()));
        assert_eq!(Config::from_toml_str(&c.to_toml()).unwrap(), c);
        let e = Config::from_toml_str("[sampling_by]\nhelp = \"usr\"\n").unwrap_err();
        assert!(e.reason.contains("usr"), "{e}");
        let c = Config::default()
            .with_overrides([
                ("EVENTBATCH_BATCHING", "false"),
                ("EVENTBATCH_SAMPLING_TARGETS", "{ help = 250 }"),
                ("EVENTBATCH_SAMPLING_BY", "{ help = \"server\" }"),
            ])
            .unwrap();
        assert!(!c.batching);
        assert_eq!(c.sampling_targets["help"], 250.0);
        assert_eq!(c.sampling_by["help"], SampleBy::Server);
        let e = Config::default()
            .with_overrides([("EVENTBATCH_SAMPLING_TARGETS", "{ help = 0 }")])
            .unwrap_err();
        assert_eq!(e.field, "sampling_targets[\"help\"]");
    }

    #[cfg(unix)]
    #[test]
    fn a_variable_that_is_not_unicode_is_skipped_or_named_never_a_panic() {
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt;
        let latin1 = || OsString::from_vec(b"caf\xe9 secret".to_vec());
        let vars = vec![
            (OsString::from("LANG_OF_ANOTHER_TOOL"), latin1()),
            (OsString::from_vec(b"OTHER_\xff".to_vec()), "x".into()),
            ("EVENTBATCH_MAX_BATCH_SIZE".into(), "500".into()),
        ];
        assert_eq!(
            ours(vars).unwrap(),
            [("EVENTBATCH_MAX_BATCH_SIZE".to_string(), "500".to_string())]
        );
        let e = ours(vec![("EVENTBATCH_INSTANCE_ID".into(), latin1())]).unwrap_err();
        assert_eq!(e.field, "EVENTBATCH_INSTANCE_ID");
        assert_eq!(e.value, "<11 bytes, not shown>");
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = ours(vec![(
            OsString::from_vec(b"EVENTBATCH_\xff".to_vec()),
            "1".into(),
        )]);
        assert!(e.unwrap_err().reason.contains("name is not valid Unicode"));
    }

    #[test]
    fn debug_shows_every_field_and_never_the_key() {
        let config = Config {
            identity_key: Some("a secret key of some length".into()),
            ..Config::default()
        };
        let shown = format!("{config:?}");
        let table = toml::Table::try_from(&config).unwrap();
        for field in table.keys().filter(|k| *k != "identity_key") {
            assert!(
                shown.contains(field.as_str()),
                "{field} missing from {shown}"
            );
        }
        assert!(!shown.contains("a secret key"), "{shown}");
    }
}
