//! HTML escaping. Every string that comes from the store (series names, descriptions) or the
//! command line goes through [`esc`] before it is written into the page, in text and in
//! attribute values alike.

use std::borrow::Cow;

/// `text` with `& < > " '` replaced by entities: safe as element text and as a quoted
/// attribute value.
pub fn esc(text: &str) -> Cow<'_, str> {
    if !text.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_both_quotes() {
        assert_eq!(
            esc(r#"<script>alert("1")</script> & 'x'"#),
            "&lt;script&gt;alert(&quot;1&quot;)&lt;/script&gt; &amp; &#39;x&#39;"
        );
        assert!(matches!(esc("api_latency.api"), Cow::Borrowed(_)));
        assert_eq!(esc("é ✓"), "é ✓");
    }
}
