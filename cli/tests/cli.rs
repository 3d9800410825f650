//! The built `eventbatch` binary: every help page exits 0 and names every option with its
//! default, `--version` answers, and `detect` runs on a tiny CSV with settings from flags and
//! from a config file, refusing bad ones with a clear message.

use std::path::Path;
use std::process::{Command, Output};

use eventbatch::DetectorSettings;

fn eventbatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eventbatch"))
        .args(args)
        .output()
        .expect("the eventbatch binary runs")
}

/// Runs `args`, asserts exit 0 and returns stdout.
fn ok(args: &[&str]) -> String {
    let out = eventbatch(args);
    let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
    assert!(
        out.status.success(),
        "{args:?}: {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The help line of `--flag`, which must exist.
fn help_line<'a>(help: &'a str, flag: &str) -> &'a str {
    help.lines()
        .find(|l| l.trim_start().starts_with(&format!("{flag} ")))
        .unwrap_or_else(|| panic!("no {flag} in the help:\n{help}"))
}

#[test]
fn top_level_help_and_version() {
    let help = ok(&["--help"]);
    for word in ["demo", "detect", "report", "--help", "--version"] {
        assert!(help.contains(word), "{word} missing from:\n{help}");
    }
    let version = ok(&["--version"]);
    assert_eq!(
        version.trim(),
        format!("eventbatch {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn demo_help_names_options_and_defaults() {
    let help = ok(&["demo", "--help"]);
    assert!(help_line(&help, "--db <PATH>").contains("[default: eventbatch-demo.db]"));
    assert!(help_line(&help, "--events <N>").contains("[default: 1000000]"));
}

#[test]
fn report_help_names_its_options() {
    let help = ok(&["report", "--help"]);
    for flag in [
        "--db <PATH>",
        "--url <URL>",
        "--metric <METRIC>",
        "--since <TIME>",
        "--until <TIME>",
        "--resolution <RESOLUTION>",
        "--unit <METRIC=UNIT>",
        "--output <report.html>",
    ] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(flag) || l.contains(&format!(", {flag}"))),
            "no {flag} in the help:\n{help}"
        );
    }
    assert!(help.contains("[default: window]"), "{help}");
    assert!(help.contains("RFC 3339"), "{help}");
}

#[test]
fn detect_help_names_every_setting_with_its_default() {
    let help = ok(&["detect", "--help"]);
    assert!(help.contains("<INPUT.csv>"), "{help}");
    help_line(&help, "-o, --output <OUT.csv>");
    help_line(&help, "--config <FILE>");
    let defaults = serde_json::to_value(DetectorSettings::default()).expect("serialises");
    let defaults = defaults.as_object().expect("an object");
    for (field, value) in defaults {
        let flag = format!("--{}", field.replace('_', "-"));
        let line = help_line(&help, &flag);
        let value = value.as_f64().expect("numeric setting");
        let shown: f64 = line
            .rsplit_once("[default: ")
            .and_then(|(_, d)| d.strip_suffix(']'))
            .unwrap_or_else(|| panic!("no default on {line:?}"))
            .parse()
            .expect("numeric default");
        assert_eq!(shown, value, "{line}");
    }
}

fn tiny_csv(dir: &Path) -> std::path::PathBuf {
    let mut text = String::from("timestamp,value,note\n");
    for i in 0..60 {
        let v = if i == 50 {
            100.0
        } else {
            10.0 + f64::from(i % 3)
        };
        text.push_str(&format!(
            "2014-01-01 {:02}:{:02}:00,{v},\"a, b\"\n",
            i / 60,
            i % 60
        ));
    }
    let path = dir.join("in.csv");
    std::fs::write(&path, text).expect("write input");
    path
}

#[test]
fn detect_runs_on_a_tiny_csv() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = tiny_csv(dir.path());
    let output = dir.path().join("out.csv");
    let (i, o) = (input.to_str().unwrap(), output.to_str().unwrap());
    let stdout = ok(&["detect", i, "--output", o]);
    assert!(stdout.starts_with("60 rows scored"), "{stdout}");
    let out = std::fs::read_to_string(&output).expect("output written");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "timestamp,value,anomaly_score,pattern");
    assert_eq!(lines.len(), 61);
    assert!(
        lines[1].starts_with("2014-01-01 00:00:00,10,"),
        "{}",
        lines[1]
    );
    assert!(lines[51].ends_with(",spike"), "{}", lines[51]);

    // A spike ratio of 20 makes the tenfold value no spike; from a flag and from a file.
    ok(&["detect", i, "-o", o, "--spike-ratio", "20"]);
    let out = std::fs::read_to_string(&output).unwrap();
    assert!(!out.contains("spike"), "{out}");
    let config = dir.path().join("settings.toml");
    std::fs::write(&config, "spike_ratio = 20.0\n").unwrap();
    ok(&["detect", i, "-o", o, "--config", config.to_str().unwrap()]);
    assert!(!std::fs::read_to_string(&output).unwrap().contains("spike"));
    // The flag wins over the file.
    ok(&[
        "detect",
        i,
        "-o",
        o,
        "--config",
        config.to_str().unwrap(),
        "--spike-ratio",
        "2",
    ]);
    assert!(std::fs::read_to_string(&output).unwrap().contains("spike"));
}

#[test]
fn detect_refuses_bad_settings_and_rows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = tiny_csv(dir.path());
    let output = dir.path().join("out.csv");
    let (i, o) = (input.to_str().unwrap(), output.to_str().unwrap());
    let out = eventbatch(&["detect", i, "-o", o, "--drop-ratio", "1.5"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("drop_ratio = 1.5"), "{stderr}");
    let config = dir.path().join("settings.json");
    std::fs::write(&config, r#"{"spike_ratoi": 3}"#).unwrap();
    let out = eventbatch(&["detect", i, "-o", o, "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `spike_ratoi`"));
    std::fs::write(
        &input,
        "timestamp,value\n2014-01-01 00:00:00,1\n2014-01-01,2\n",
    )
    .unwrap();
    let out = eventbatch(&["detect", i, "-o", o]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 3"));
    assert!(!output.exists(), "no output for a malformed input");
}
