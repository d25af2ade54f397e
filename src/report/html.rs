//! The page's HTML: escaping, number formatting (signed weights, percentages) and the
//! document itself (header, tree of nested `<details>`, inline CSS and optional script).

use super::base64;
use super::{Page, PageNode};

/// `s` with the five characters that matter in HTML text and quoted attributes escaped
/// (`&`, `<`, `>`, `"`, `'`), so a name can never open a tag or leave an attribute.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(s, &mut out);
    out
}

/// [`escape`], appended to `out`.
pub(crate) fn escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // NUL is a parse error that browsers turn into U+FFFD: say so ourselves
            '\0' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

/// A signed number with three significant digits in scientific notation: `+1.23e-2`,
/// `−4.5e-3` (a real minus sign, U+2212), `0` for zero; trailing zeros of the mantissa are
/// dropped, keeping one decimal (`+1.0e0`).
pub(crate) fn signed(v: f32) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let sign = if v > 0.0 { '+' } else { '\u{2212}' };
    if v.is_infinite() {
        return format!("{sign}\u{221e}");
    }
    let s = format!("{:.2e}", v.abs());
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let mant = mant.trim_end_matches('0');
    let mant = if mant.ends_with('.') {
        format!("{mant}0")
    } else {
        mant.to_string()
    };
    format!("{sign}{mant}e{exp}")
}

/// What a weight does to its parent: `excitatory` (positive), `inhibitory` (negative),
/// `zero` otherwise.
pub(crate) fn effect(v: f32) -> &'static str {
    if v > 0.0 {
        "excitatory"
    } else if v < 0.0 {
        "inhibitory"
    } else {
        "zero"
    }
}

/// A fraction in 0..1 as a percentage with one decimal: `0.123` is `12.3%`; a share too
/// small to show but not zero is `<0.1%`, a NaN is `n/a`.
pub(crate) fn percent(f: f32) -> String {
    if f.is_nan() {
        return "n/a".into();
    }
    let p = f64::from(f) * 100.0;
    if p > 0.0 && p < 0.05 {
        return "<0.1%".into();
    }
    format!("{p:.1}%")
}

/// The width of a share bar: the percentage clamped to 0..100, two decimals.
fn bar_width(f: f32) -> String {
    let p = if f.is_nan() {
        0.0
    } else {
        (f64::from(f) * 100.0).clamp(0.0, 100.0)
    };
    format!("{p:.2}%")
}

/// An `<img>` of `png` (a data URI) with class `class` and alt text `alt`, or a
/// placeholder box when there are no bytes.
fn image(out: &mut String, png: &[u8], class: &str, alt: &str) {
    if png.is_empty() {
        out.push_str(&format!(
            "<span class=\"{class} noimg\" role=\"img\" aria-label=\"{}\">no image</span>",
            escape(alt)
        ));
        return;
    }
    out.push_str(&format!(
        "<img class=\"{class}\" alt=\"{}\" src=\"data:image/png;base64,",
        escape(alt)
    ));
    base64::encode_into(png, out);
    out.push_str("\">");
}

/// How many nodes the tree holds and how deep it goes (the root alone is depth 1).
fn count(n: &PageNode) -> (usize, usize) {
    n.children.iter().fold((1, 1), |(nodes, depth), c| {
        let (cn, cd) = count(c);
        (nodes + cn, depth.max(cd + 1))
    })
}

const CSS: &str = r#"
:root { --bg:#fafafa; --fg:#1d1f21; --muted:#6b7079; --line:#d5d8dc; --card:#fff;
  --exc:#1b7f3b; --inh:#b3261e; --bar:#4a78c2; --img:#111; }
@media (prefers-color-scheme: dark) {
  :root { --bg:#16181b; --fg:#e4e6e8; --muted:#9aa0a6; --line:#3a3f45; --card:#1f2226;
    --exc:#5cc77e; --inh:#f07167; --bar:#7aa2e3; --img:#000; }
}
* { box-sizing: border-box; }
body { margin: 0; padding: 1.25rem 1.5rem 3rem; background: var(--bg); color: var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
code, .path, .num { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
img, .noimg { image-rendering: crisp-edges; image-rendering: pixelated; background: var(--img);
  object-fit: contain; border-radius: 3px; flex: none; }
.noimg { display: inline-flex; align-items: center; justify-content: center; color: #888;
  font-size: 12px; }
header { display: flex; gap: 1.5rem; align-items: flex-start; flex-wrap: wrap;
  padding-bottom: 1rem; margin-bottom: 1rem; border-bottom: 1px solid var(--line); }
header figure { margin: 0; text-align: center; }
header figcaption { color: var(--muted); font-size: 12px; margin-top: .25rem; word-break: break-all; }
img.input, .input.noimg { width: 224px; height: 224px; }
h1 { font-size: 1.35rem; margin: 0 0 .6rem; word-break: break-word; }
dl.settings { display: grid; grid-template-columns: max-content 1fr; gap: .15rem .9rem; margin: 0 0 .8rem; }
dl.settings dt { color: var(--muted); }
dl.settings dd { margin: 0; word-break: break-word; }
table { border-collapse: collapse; }
table.labels td { padding: .1rem .6rem .1rem 0; vertical-align: middle; }
table.labels td.num { text-align: right; }
.bar { display: inline-block; width: 90px; height: 8px; background: var(--line);
  border-radius: 4px; overflow: hidden; vertical-align: middle; }
.bar > span { display: block; height: 100%; background: var(--bar); }
.tools { margin: 0 0 .75rem; }
.tools button { font: inherit; margin-right: .4rem; }
details.node { margin: .35rem 0; }
details.node > summary { display: flex; gap: .9rem; align-items: flex-start; cursor: pointer;
  padding: .45rem .6rem; background: var(--card); border: 1px solid var(--line);
  border-radius: 6px; list-style: none; }
details.node > summary::-webkit-details-marker { display: none; }
details.node > summary::before { content: "\25B8"; color: var(--muted); width: .8em; flex: none; }
details.node[open] > summary::before { content: "\25BE"; }
details.leaf > summary { cursor: default; }
details.leaf > summary::before { content: "\2022"; }
img.recon, .recon.noimg { width: 128px; height: 128px; }
details.root > summary img.recon, details.root > summary .recon.noimg { width: 192px; height: 192px; }
.info { display: flex; flex-direction: column; gap: .12rem; min-width: 0; }
.info > span { display: block; }
.path { font-size: 13px; word-break: break-all; }
.path b { font-size: 15px; }
.bc { color: var(--muted); }
.exc { color: var(--exc); }
.inh { color: var(--inh); }
.note { font-style: italic; color: var(--muted); }
.kids { color: var(--muted); font-size: 12px; }
.children { margin-left: 1.1rem; padding-left: .9rem; border-left: 2px solid var(--line); }
table.via { margin: .3rem 0 .3rem 1.1rem; font-size: 12px; }
table.via caption { text-align: left; color: var(--muted); }
table.via td { padding: 0 .8rem 0 0; }
footer { margin-top: 2rem; color: var(--muted); font-size: 12px; }
"#;

/// Expand / collapse all: optional, the page is complete without it (no buttons then).
/// It holds no `<` or `&`, so even a parser that does not know `<script>` reads it as text.
const SCRIPT: &str = r#"
(function () {
  var t = document.getElementById("tools");
  if (!t) return;
  function all(open) {
    document.querySelectorAll("details.node").forEach(function (d) { d.open = open; });
  }
  [["expand all", true], ["collapse all", false]].forEach(function (b) {
    var e = document.createElement("button");
    e.type = "button";
    e.textContent = b[0];
    e.onclick = function () { all(b[1]); };
    t.appendChild(e);
  });
})();
"#;

/// The whole document.
pub(crate) fn render(page: &Page) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let (nodes, depth) = count(&page.root);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    // nothing may be fetched: images are data URIs, style and script are inline
    out.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n",
    );
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str(&format!(
        "<meta name=\"generator\" content=\"treevis {}\">\n",
        env!("CARGO_PKG_VERSION")
    ));
    out.push_str(&format!("<title>{}</title>\n", escape(&page.title)));
    out.push_str("<style>");
    out.push_str(CSS);
    out.push_str("</style>\n</head>\n<body>\n");

    header(&mut out, page, nodes, depth);

    out.push_str("<main>\n<div class=\"tools\" id=\"tools\"></div>\n");
    node(&mut out, &page.root, true, &mut 0);
    out.push_str("</main>\n");

    out.push_str(
        "<footer><p><b>weight</b>: the node's signed contribution s<sub>j</sub> to its \
         parent (excitatory when positive, inhibitory when negative); <b>share</b>: \
         |s<sub>j</sub>| / &Sigma;<sub>i</sub> |s<sub>i</sub>| over its siblings.</p>\
         <p>Written by treevis; this page is self-contained (no network, no other file).</p>\
         </footer>\n",
    );
    out.push_str("<script>");
    out.push_str(SCRIPT);
    out.push_str("</script>\n</body>\n</html>\n");
    out
}

fn header(out: &mut String, page: &Page, nodes: usize, depth: usize) {
    out.push_str("<header>\n<figure>");
    image(
        out,
        &page.input_png,
        "input",
        &format!("input image {}", page.image),
    );
    out.push_str(&format!(
        "<figcaption>{}</figcaption></figure>\n",
        escape(&page.image)
    ));
    out.push_str("<div class=\"meta\">\n");
    out.push_str(&format!(
        "<h1>{}</h1>\n<dl class=\"settings\">\n",
        escape(&page.title)
    ));
    for (k, v) in [
        ("model", page.model.as_str()),
        ("method", &page.method),
        ("multiplier", &page.mult),
        ("display", &page.display),
        ("image", &page.image),
    ] {
        out.push_str(&format!(
            "<dt>{k}</dt><dd class=\"{k}\">{}</dd>\n",
            escape(v)
        ));
    }
    out.push_str(&format!(
        "<dt>tree</dt><dd class=\"tree\">{nodes} node{}, depth {depth}</dd>\n</dl>\n",
        if nodes == 1 { "" } else { "s" }
    ));
    if !page.labels.is_empty() {
        out.push_str("<table class=\"labels\">\n<caption hidden>top labels</caption>\n");
        for (i, (name, p)) in page.labels.iter().enumerate() {
            out.push_str(&format!(
                "<tr><td class=\"num\">{}.</td><td class=\"label\">{}</td>\
                 <td class=\"num prob\">{}</td>\
                 <td><span class=\"bar\"><span style=\"width:{}\"></span></span></td></tr>\n",
                i + 1,
                escape(name),
                escape(&percent(*p)),
                bar_width(*p)
            ));
        }
        out.push_str("</table>\n");
    }
    out.push_str("</div>\n</header>\n");
}

/// One node and, nested inside, its children; `id` numbers the nodes in preorder.
fn node(out: &mut String, n: &PageNode, root: bool, id: &mut usize) {
    let mut class = String::from("node");
    if root {
        class.push_str(" root");
    }
    if n.children.is_empty() {
        class.push_str(" leaf");
    }
    out.push_str(&format!(
        "<details open class=\"{class}\" id=\"n{id}\" data-path=\"{}\">\n<summary>",
        escape(&n.path)
    ));
    *id += 1;
    image(
        out,
        &n.png,
        "recon",
        &format!("reconstruction of {}", n.path),
    );
    out.push_str("<span class=\"info\">");

    // the path, its last step in bold
    out.push_str("<span class=\"path\">");
    match n.path.rsplit_once('/') {
        Some((head, last)) => {
            out.push_str(&format!("{}/<b>{}</b>", escape(head), escape(last)));
        }
        None => out.push_str(&format!("<b>{}</b>", escape(&n.path))),
    }
    out.push_str("</span>");
    out.push_str(&format!(
        "<span class=\"bc\">neuron <code class=\"blobch\">{}:{}</code> \
         (blob {}, channel {})</span>",
        escape(&n.blob),
        n.channel,
        escape(&n.blob),
        n.channel
    ));

    match n.weight {
        Some(w) => {
            let cls = match effect(w) {
                "excitatory" => " exc",
                "inhibitory" => " inh",
                _ => "",
            };
            out.push_str(&format!(
                "<span class=\"weight{cls}\">weight <span class=\"num\">{}</span> {}</span>",
                signed(w),
                effect(w)
            ));
        }
        None if root => out.push_str("<span class=\"weight\">root</span>"),
        None => {}
    }
    if let Some(s) = n.share {
        out.push_str(&format!(
            "<span class=\"share\">share <span class=\"num\">{}</span> \
             <span class=\"bar\"><span style=\"width:{}\"></span></span></span>",
            escape(&percent(s)),
            bar_width(s)
        ));
    }
    if let Some(note) = &n.note {
        out.push_str(&format!("<span class=\"note\">{}</span>", escape(note)));
    }
    if !n.children.is_empty() {
        let k = n.children.len();
        out.push_str(&format!(
            "<span class=\"kids\">{k} child{}</span>",
            if k == 1 { "" } else { "ren" }
        ));
    }
    out.push_str("</span></summary>\n");

    if !n.via.is_empty() {
        out.push_str("<table class=\"via\"><caption>per-edge terms</caption>\n");
        for (edge, v) in &n.via {
            let cls = match effect(*v) {
                "excitatory" => "num exc",
                "inhibitory" => "num inh",
                _ => "num",
            };
            out.push_str(&format!(
                "<tr><td><code>{}</code></td><td class=\"{cls}\">{}</td></tr>\n",
                escape(edge),
                signed(*v)
            ));
        }
        out.push_str("</table>\n");
    }
    if !n.children.is_empty() {
        out.push_str("<div class=\"children\">\n");
        for c in &n.children {
            node(out, c, false, id);
        }
        out.push_str("</div>\n");
    }
    out.push_str("</details>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(escape("plain text"), "plain text");
        assert_eq!(
            escape(r#"<b>"a" & 'b'</b>"#),
            "&lt;b&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/b&gt;"
        );
        // already-escaped text is escaped again, not trusted
        assert_eq!(escape("&amp;"), "&amp;amp;");
        assert_eq!(escape("a\0b"), "a\u{fffd}b");
        assert_eq!(escape("chat/ü—ñ"), "chat/ü—ñ");
    }

    #[test]
    fn signed_numbers() {
        assert_eq!(signed(0.0123), "+1.23e-2");
        assert_eq!(signed(-0.0045), "\u{2212}4.5e-3");
        assert_eq!(signed(1.0), "+1.0e0");
        assert_eq!(signed(-250.0), "\u{2212}2.5e2");
        assert_eq!(signed(0.099_96), "+1.0e-1"); // rounds up to the next decade
        assert_eq!(signed(0.0), "0");
        assert_eq!(signed(-0.0), "0");
        assert_eq!(signed(f32::NAN), "NaN");
        assert_eq!(signed(f32::INFINITY), "+\u{221e}");
        assert_eq!(signed(f32::NEG_INFINITY), "\u{2212}\u{221e}");
        assert_eq!(effect(0.1), "excitatory");
        assert_eq!(effect(-0.1), "inhibitory");
        assert_eq!(effect(0.0), "zero");
        assert_eq!(effect(f32::NAN), "zero");
    }

    #[test]
    fn percentages() {
        assert_eq!(percent(0.123), "12.3%");
        assert_eq!(percent(1.0), "100.0%");
        assert_eq!(percent(0.0), "0.0%");
        assert_eq!(percent(0.0004), "<0.1%");
        assert_eq!(percent(0.0006), "0.1%");
        assert_eq!(percent(f32::NAN), "n/a");
        assert_eq!(bar_width(0.5), "50.00%");
        assert_eq!(bar_width(1.5), "100.00%");
        assert_eq!(bar_width(-0.1), "0.00%");
        assert_eq!(bar_width(f32::NAN), "0.00%");
    }

    #[test]
    fn inline_css_and_script_fetch_nothing_and_hold_no_markup() {
        for text in [CSS, SCRIPT] {
            assert!(!text.contains('<') && !text.contains('&'));
            assert!(!text.contains("url(") && !text.contains("@import"));
            assert!(!text.contains("http:") && !text.contains("https:"));
        }
    }

    #[test]
    fn a_node_shows_its_numbers_note_and_terms() {
        let page = Page {
            title: "t".into(),
            labels: vec![("tabby <cat>".into(), 0.5)],
            root: PageNode {
                path: "conv5:12".into(),
                blob: "conv5".into(),
                channel: 12,
                children: vec![PageNode {
                    path: "conv5:12/conv4:3".into(),
                    blob: "conv4".into(),
                    channel: 3,
                    weight: Some(-0.0045),
                    share: Some(0.123),
                    note: Some("all-zero: the filter removed \"every\" gradient".into()),
                    via: vec![("a->b".into(), 0.0123)],
                    png: vec![0xff, 0xff, 0xff],
                    children: vec![],
                }],
                ..PageNode::default()
            },
            ..Page::default()
        };
        let h = render(&page);
        assert!(h.contains("weight <span class=\"num\">\u{2212}4.5e-3</span> inhibitory"));
        assert!(h.contains("share <span class=\"num\">12.3%</span>"));
        assert!(h.contains("all-zero: the filter removed &quot;every&quot; gradient"));
        assert!(h.contains("<code>a-&gt;b</code></td><td class=\"num exc\">+1.23e-2</td>"));
        assert!(h.contains("tabby &lt;cat&gt;</td><td class=\"num prob\">50.0%"));
        assert!(h.contains("src=\"data:image/png;base64,////\""));
        // the root has no image: a placeholder, not a broken <img>
        assert_eq!(h.matches("<img").count(), 1);
        assert!(h.contains("noimg"));
        assert!(h.contains("<span class=\"weight\">root</span>"));
        assert!(!h.contains("<cat>"));
    }
}
