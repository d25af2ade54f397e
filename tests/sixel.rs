//! Sixel output decoded back to pixels (icy_sixel): the reconstruction the app sends to a
//! sixel terminal is the reconstruction the engine computed.

use std::sync::Arc;

use candle_core::Device;
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;
use ratatui::Terminal;
use ratatui_image::picker::{Picker, ProtocolType};
use treevis::engine::{JobKey, Output, Scheduler};
use treevis::model::WeightsSource;
use treevis::recon::display::Display;
use treevis::recon::Options;
use treevis::tui::ui::Images;

#[test]
fn sixel_tiles_decode_to_the_reconstruction() {
    let dir = tempfile::tempdir().unwrap();
    let star = dir.path().join("star.png");
    treevis::data::synth::generate_class(treevis::cli::DEMO_GALLERY_SEED, 9, 9)
        .save(&star)
        .unwrap();
    let model = treevis::catalog::load("demo", &WeightsSource::Default, &Device::Cpu).unwrap();
    let mut s = Scheduler::new(model, 16 << 20);
    let key = JobKey::Recon {
        image: star,
        path: "conv5:42".parse().unwrap(),
        opts: Options::default(),
        display: Display::Norm,
    };
    s.want(vec![key.clone()]);
    let out = s.step();
    let Output::Image(img) = &out[0].1 else {
        panic!("no image: {:?}", out[0].1)
    };
    let img: Arc<image::RgbImage> = img.clone();

    // a sixel terminal with 8x16 cells; a 16x8-cell tile is 128x128 pixels
    // (a real terminal is queried; TestBackend cannot answer, so the font size is given)
    #[allow(deprecated)]
    let mut picker = Picker::from_fontsize(ratatui_image::FontSize::new(8, 16));
    picker.set_protocol_type(ProtocolType::Sixel);
    let mut images = Images::new(Some(picker));
    let mut term = Terminal::new(TestBackend::new(20, 10)).unwrap();
    term.draw(|f| images.draw(f, Rect::new(1, 1, 16, 8), &key, &img))
        .unwrap();
    let seq: String = term
        .backend()
        .buffer()
        .content()
        .iter()
        .map(|c| c.symbol())
        .find(|s| s.contains("\x1bP"))
        .expect("a sixel sequence in the buffer")
        .to_string();
    let start = seq.find("\x1bP").unwrap();
    let decoded = icy_sixel::SixelImage::decode(&seq.as_bytes()[start..]).unwrap();
    // scaled to the tile; sixel bands are 6 pixels high, so the height rounds up
    assert_eq!(decoded.width, 128);
    assert!(
        (128..134).contains(&decoded.height),
        "height {}",
        decoded.height
    );
    // compare with the reconstruction scaled the same way (nearest neighbour)
    let want = image::imageops::resize(&*img, 128, 128, image::imageops::FilterType::Nearest);
    let mut diff = 0f64;
    for (i, px) in want.pixels().enumerate() {
        for c in 0..3 {
            let (y, x) = (i / 128, i % 128);
            diff += (px.0[c] as f64 - decoded.pixels[(y * decoded.width + x) * 4 + c] as f64).abs();
        }
    }
    let mean = diff / (128.0 * 128.0 * 3.0);
    // sixel quantises to a palette; the picture must survive it
    assert!(mean < 8.0, "mean absolute difference {mean}");
}

/// What tmux passes through of `ESC P tmux; … ESC \`: the inner bytes (doubled ESCs made
/// single) and whatever follows the passthrough's end.
fn tmux_passthrough(data: &str) -> (String, &str) {
    let body = data.strip_prefix("\x1bPtmux;").expect("a tmux passthrough");
    let mut inner = String::new();
    let mut chars = body.char_indices();
    while let Some((_, c)) = chars.next() {
        if c != '\x1b' {
            inner.push(c);
            continue;
        }
        match chars.next() {
            Some((_, '\x1b')) => inner.push('\x1b'),
            Some((i, '\\')) => return (inner, &body[i + 1..]),
            other => panic!("ESC followed by {other:?} inside the passthrough"),
        }
    }
    panic!("the passthrough never ends")
}

#[test]
fn a_sixel_for_tmux_passes_through_whole() {
    let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(16, 16, |x, y| {
        image::Rgb([(x * 16) as u8, (y * 16) as u8, 128])
    }));
    let size = ratatui::layout::Size::new(2, 1);
    let raw = ratatui_image::protocol::sixel::Sixel::new(img, size, true)
        .unwrap()
        .data;
    // ratatui-image 11.1 as it is: tmux ends the passthrough at the sixel's own terminator,
    // and the terminal gets a sixel with none
    let (inner, rest) = tmux_passthrough(&raw);
    assert!(!rest.is_empty() && !inner.ends_with("\x1b\\"));
    // as the app sends it: the whole sixel, terminated, and nothing left over
    let fixed = treevis::tui::ui::tmux_sixel_terminated(&raw).unwrap();
    let (inner, rest) = tmux_passthrough(&fixed);
    assert_eq!(rest, "");
    assert!(
        inner.contains("\x1bP") && inner.ends_with("\x1b\\"),
        "{inner:?}"
    );
    // and it decodes to the picture
    let sixel = &inner[inner.find("\x1bP").unwrap()..];
    let d = icy_sixel::SixelImage::decode(sixel.as_bytes()).unwrap();
    assert_eq!(d.width, 16);
    let (x, y) = (5, 3);
    let px = &d.pixels[(y * d.width + x) * 4..][..3];
    let want = [x as u8 * 16, y as u8 * 16, 128];
    assert!(
        px.iter().zip(want).all(|(&a, b)| a.abs_diff(b) <= 16),
        "{px:?} for {want:?}"
    );
    // already right, or no passthrough at all: left alone
    assert_eq!(treevis::tui::ui::tmux_sixel_terminated(&fixed), None);
    assert_eq!(treevis::tui::ui::tmux_sixel_terminated(sixel), None);
}
