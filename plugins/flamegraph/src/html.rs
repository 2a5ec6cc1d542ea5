//! The page: one offline HTML file with the vendored d3 / d3-flame-graph, our CSS/JS and the
//! profile as JSON. The JSON is escaped for a <script> context, so names like
//! `</script><img onerror=…>` stay data.

use anyhow::Result;

const TEMPLATE: &str = include_str!("../../../assets/flamegraph/template.html");
const CSS: &str = include_str!("../../../assets/flamegraph/flamegraph.css");
const JS: &str = include_str!("../../../assets/flamegraph/flamegraph.js");
const D3: &str = include_str!("../../../assets/vendor/d3/7.8.5/d3.min.js");
const FLAMEGRAPH_JS: &str =
    include_str!("../../../assets/vendor/d3-flame-graph/4.1.3/d3-flamegraph.min.js");
const FLAMEGRAPH_CSS: &str =
    include_str!("../../../assets/vendor/d3-flame-graph/4.1.3/d3-flamegraph.css");

/// JSON text safe inside <script>: `<`, `>`, `&` and the JS line separators escaped (they
/// can only be inside strings, where the escapes read as the same characters).
pub fn script_safe_json(json: &[u8]) -> Result<String> {
    let text = std::str::from_utf8(json)?;
    let mut out = String::with_capacity(text.len());
    // Unchanged runs are copied whole; only the five characters are looked at.
    let mut copied = 0;
    for (at, c) in text.match_indices(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        out.push_str(&text[copied..at]);
        out.push_str(match c {
            "<" => "\\u003c",
            ">" => "\\u003e",
            "&" => "\\u0026",
            "\u{2028}" => "\\u2028",
            _ => "\\u2029",
        });
        copied = at + c.len();
    }
    out.push_str(&text[copied..]);
    Ok(out)
}

/// A vendored script must not contain `</script` either (it would end the tag).
fn script_safe(code: &str) -> String {
    code.replace("</script", "<\\/script")
}

/// The page around `data`, the JSON text of the flame graph's data.
pub fn render(title: &str, data: &[u8]) -> Result<String> {
    let mut tera = tera::Tera::default();
    tera.add_raw_template("flamegraph.html", TEMPLATE)?;
    let mut ctx = tera::Context::new();
    ctx.insert("title", title);
    ctx.insert("css", &format!("{FLAMEGRAPH_CSS}\n{CSS}"));
    ctx.insert("vendor_js", &script_safe(&format!("{D3}\n{FLAMEGRAPH_JS}")));
    ctx.insert("js", &script_safe(JS));
    ctx.insert("data", &script_safe_json(data)?);
    Ok(tera.render("flamegraph.html", &ctx)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_cannot_close_the_script() {
        let v = serde_json::json!({"name": "</script><img src=x onerror=alert(1)>", "f": "a&b\u{2028}c\u{2029}é>"});
        let s = script_safe_json(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert!(!s.contains(['<', '>', '&', '\u{2028}', '\u{2029}']), "{s}");
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v);
        let page = render("t <b>", &serde_json::to_vec(&v).unwrap()).unwrap();
        assert!(page.contains("t &lt;b&gt;"));
        assert_eq!(
            page.matches("</script>").count(),
            page.matches("<script>").count()
        );
    }
}
