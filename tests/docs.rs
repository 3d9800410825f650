//! The reference in `docs/` against the code it describes, so it cannot drift.

use eventbatch::Config;

/// The first fenced block of `lang` after the line holding `marker` in `text`.
fn block_after<'a>(text: &'a str, marker: &str, lang: &str) -> &'a str {
    let from = text.find(marker).expect("marker present");
    let fence = format!("```{lang}\n");
    let start = from + text[from..].find(&fence).expect("block present") + fence.len();
    let len = text[start..].find("```").expect("block closed");
    &text[start..start + len]
}

#[test]
fn the_configuration_reference_lists_every_field_with_its_default() {
    let page = include_str!("../docs/configuration.md");
    let listed = block_after(page, "Every field with its default", "toml");
    assert_eq!(
        listed,
        Config::default().to_toml(),
        "docs/configuration.md: replace the block with `cargo run --example default_config`"
    );
}
