//! The drawing backend of every chart: plotters' RGB bitmap, with text set glyph by glyph from
//! the embedded font.
//!
//! plotters' own ab_glyph text (0.3.7) places each glyph's bitmap at the pen position without
//! the glyph's left side bearing, so narrow glyphs ("i", "l", ".", "1") sit too far left and
//! words look unevenly spaced ("accur acy", "0. 001"). [`Canvas`] passes every drawing call to
//! the bitmap backend except text, which it lays out itself: pen advances and kerning as
//! plotters does, plus each glyph's bearing and sub-pixel position; anchors and the quarter-turn
//! rotations behave as in plotters.

use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};
use plotters::backend::BitMapBackend;
use plotters::style::FontTransform;
use plotters::style::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, DrawingErrorKind,
};

use crate::FONT;

/// The embedded font, parsed once.
fn embedded_font() -> Option<&'static FontRef<'static>> {
    static PARSED: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    PARSED
        .get_or_init(|| FontRef::try_from_slice(FONT).ok())
        .as_ref()
}

/// Whether the embedded font parses.
pub(crate) fn font_loads() -> bool {
    embedded_font().is_some()
}

/// A float pixel position as an integer one (glyph bounds are whole pixels already).
#[allow(clippy::cast_possible_truncation)] // clamped to a range i32 holds
fn whole(v: f32) -> i32 {
    v.round().clamp(-1e6, 1e6) as i32
}

/// A text size as ab_glyph's scale: `size` pixels from the font's ascent to its descent.
#[allow(clippy::cast_possible_truncation)] // sizes are a few dozen pixels
fn scale(size: f64) -> PxScale {
    PxScale::from(size as f32)
}

/// The width (pen advances and kerning) and height (ascent to descent) of `text` at `size`.
pub(crate) fn measure(text: &str, size: f64) -> (u32, u32) {
    let Some(font) = embedded_font() else {
        return (0, 0);
    };
    let scaled = font.as_scaled(scale(size));
    let width = advance(&scaled, text);
    let height = scaled.ascent() - scaled.descent();
    let to_u32 = |v: f32| u32::try_from(whole(v.ceil())).unwrap_or(0);
    (to_u32(width), to_u32(height))
}

/// The pen advance of `text`, kerning included.
fn advance<F: Font>(scaled: &impl ScaleFont<F>, text: &str) -> f32 {
    let mut width = 0.0;
    let mut previous = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = previous {
            width += scaled.kern(p, id);
        }
        width += scaled.h_advance(id);
        previous = Some(id);
    }
    width
}

/// plotters' bitmap backend with [`measure`]d, bearing-correct text.
pub(crate) struct Canvas<'a> {
    bitmap: BitMapBackend<'a>,
}

impl<'a> Canvas<'a> {
    /// A canvas drawing into `bitmap`.
    pub(crate) fn new(bitmap: BitMapBackend<'a>) -> Self {
        Self { bitmap }
    }
}

/// The bitmap backend's error.
type Error = <BitMapBackend<'static> as DrawingBackend>::ErrorType;

impl DrawingBackend for Canvas<'_> {
    type ErrorType = Error;

    fn get_size(&self) -> (u32, u32) {
        self.bitmap.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Error>> {
        self.bitmap.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), DrawingErrorKind<Error>> {
        self.bitmap.present()
    }

    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> Result<(), DrawingErrorKind<Error>> {
        self.bitmap.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Error>> {
        self.bitmap.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Error>> {
        self.bitmap.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Error>> {
        self.bitmap.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Error>> {
        self.bitmap.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Error>> {
        self.bitmap.fill_polygon(vert, style)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        (w, h): (u32, u32),
        src: &[u8],
    ) -> Result<(), DrawingErrorKind<Error>> {
        self.bitmap.blit_bitmap(pos, (w, h), src)
    }

    fn estimate_text_size<TStyle: BackendTextStyle>(
        &self,
        text: &str,
        style: &TStyle,
    ) -> Result<(u32, u32), DrawingErrorKind<Error>> {
        Ok(measure(text, style.size()))
    }

    /// Sets `text` with its anchor at `pos`: each glyph at its sub-pixel pen position with its
    /// bearing, blended by coverage, then turned by the style's transform around `pos`.
    fn draw_text<TStyle: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &TStyle,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Error>> {
        let color = style.color();
        let Some(font) = embedded_font() else {
            return Ok(());
        };
        if color.alpha == 0.0 {
            return Ok(());
        }
        let px_scale = scale(style.size());
        let scaled = font.as_scaled(px_scale);
        let width = advance(&scaled, text);
        let height = scaled.ascent() - scaled.descent();
        let anchor = style.anchor();
        let left = match anchor.h_pos {
            HPos::Left => 0.0,
            HPos::Center => -width / 2.0,
            HPos::Right => -width,
        };
        let top = match anchor.v_pos {
            VPos::Top => 0.0,
            VPos::Center => -height / 2.0,
            VPos::Bottom => -height,
        };
        let baseline = top + scaled.ascent();
        let transform: FontTransform = style.transform();

        let mut pen = left;
        let mut previous = None;
        let mut result = Ok(());
        for c in text.chars() {
            let id = scaled.glyph_id(c);
            if let Some(p) = previous {
                pen += scaled.kern(p, id);
            }
            let glyph = id.with_scale_and_position(px_scale, point(pen, baseline));
            if let Some(outline) = font.outline_glyph(glyph) {
                let bounds = outline.px_bounds();
                let (x0, y0) = (whole(bounds.min.x), whole(bounds.min.y));
                outline.draw(|x, y, coverage| {
                    if result.is_err() || coverage <= 0.0 {
                        return;
                    }
                    let dx = x0 + i32::try_from(x).unwrap_or(i32::MAX);
                    let dy = y0 + i32::try_from(y).unwrap_or(i32::MAX);
                    let (tx, ty) = transform.transform(dx, dy);
                    let shade = BackendColor {
                        alpha: color.alpha * f64::from(coverage.min(1.0)),
                        rgb: color.rgb,
                    };
                    result = self.bitmap.draw_pixel((pos.0 + tx, pos.1 + ty), shade);
                });
            }
            pen += scaled.h_advance(id);
            previous = Some(id);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_measured_from_the_embedded_font() {
        assert!(font_loads());
        // DejaVu Sans 2.37 (read from its hhea and hmtx tables): ascent 1901 and descent -483
        // font units, so a scale of 2384 px is one pixel per unit; advances "i" 569, "W" 2025.
        assert_eq!(measure("i", 2384.0), (569, 2384));
        assert_eq!(measure("W", 2384.0).0, 2025);
        assert_eq!(measure("iW", 2384.0).0, 569 + 2025);
        assert_eq!(measure("", 20.0).0, 0);
    }
}
