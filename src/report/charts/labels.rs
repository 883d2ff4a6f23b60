//! Point labels that cover neither one another nor the points: each label takes the first free
//! spot among a few around its point (then further out, where a leader line joins it to its
//! point), a spot nearer its own point than any other; a label with no free spot takes the least
//! bad one, or, when optional, is left out (optional labels never move away from their point).
//! Pure pixel geometry, so the placement is tested without drawing.

/// A pixel rectangle, `x0 <= x1`, `y0 <= y1` (y grows downwards).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rect {
    pub x0: i32,
    pub y0: i32,
    pub x1: i32,
    pub y1: i32,
}

impl Rect {
    pub fn new(x0: i32, y0: i32, x1: i32, y1: i32) -> Self {
        Self { x0, y0, x1, y1 }
    }

    fn overlap(&self, o: &Rect) -> i64 {
        let w = (self.x1.min(o.x1) - self.x0.max(o.x0)).max(0) as i64;
        let h = (self.y1.min(o.y1) - self.y0.max(o.y0)).max(0) as i64;
        w * h
    }

    fn area(&self) -> i64 {
        (self.x1 - self.x0).max(0) as i64 * (self.y1 - self.y0).max(0) as i64
    }

    /// Squared distance from `(x, y)` to the rectangle.
    fn distance2(&self, p: (i32, i32)) -> i64 {
        let (nx, ny) = self.nearest(p);
        let (dx, dy) = ((nx - p.0) as i64, (ny - p.1) as i64);
        dx * dx + dy * dy
    }

    /// The point of the rectangle nearest to `(x, y)`.
    pub fn nearest(&self, (x, y): (i32, i32)) -> (i32, i32) {
        (x.clamp(self.x0, self.x1), y.clamp(self.y0, self.y1))
    }
}

/// Roughly the extent of `text` at `size` px in DejaVu Sans (its average advance is ~0.6 em),
/// with a pixel of margin each side.
pub(crate) fn text_extent(text: &str, size: u32) -> (i32, i32) {
    let w = (text.chars().count() as f64 * size as f64 * 0.6).ceil() as i32;
    (w + 2, size as i32 + 2)
}

/// One label to place: its point, its extent, and whether it may be left out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Label {
    pub at: (i32, i32),
    pub size: (i32, i32),
    pub optional: bool,
}

/// Where a label went: its rectangle (text drawn from the top-left corner), and whether it sits
/// away from its point (then draw a leader line to it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Placed {
    pub rect: Rect,
    pub far: bool,
}

/// Places `labels` in order (put the important ones first). `marks` are the points drawn, each a
/// disc of radius `radius`; nothing may leave `bounds` or cover `obstacles` (other text).
pub(crate) fn place(
    labels: &[Label],
    marks: &[(i32, i32)],
    radius: i32,
    bounds: Rect,
    obstacles: &[Rect],
) -> Vec<Option<Placed>> {
    let mark_boxes: Vec<Rect> = marks
        .iter()
        .map(|&(x, y)| Rect::new(x - radius, y - radius, x + radius, y + radius))
        .collect();
    let mut taken: Vec<Rect> = obstacles.to_vec();
    let mut out = Vec::with_capacity(labels.len());
    for l in labels {
        let mut best: Option<(i64, usize, Rect)> = None;
        for (rank, rect) in candidates(l, radius).enumerate() {
            if l.optional && rank >= NEAR_SPOTS {
                break;
            }
            let outside = rect.area() - rect.overlap(&bounds);
            // A label nearer another point than its own reads as that point's.
            let own = rect.distance2(l.at);
            let ambiguous = marks.iter().any(|&m| m != l.at && rect.distance2(m) < own);
            let cost = outside * 1000
                + taken.iter().map(|t| rect.overlap(t)).sum::<i64>() * 10
                + mark_boxes.iter().map(|m| rect.overlap(m)).sum::<i64>()
                + if ambiguous { 200 } else { 0 };
            if best.is_none_or(|b| cost < b.0) {
                best = Some((cost, rank, rect));
            }
            if cost == 0 {
                break;
            }
        }
        let Some((cost, rank, rect)) = best else {
            out.push(None);
            continue;
        };
        if cost > 0 && l.optional {
            out.push(None);
            continue;
        }
        taken.push(rect);
        out.push(Some(Placed {
            rect,
            far: rank >= NEAR_SPOTS,
        }));
    }
    out
}

/// Spots right beside the point; the rest are further out.
const NEAR_SPOTS: usize = 8;

/// Spots around the label's point, nearest first: the eight beside it, then rings further out.
fn candidates(l: &Label, radius: i32) -> impl Iterator<Item = Rect> {
    let (x, y) = l.at;
    let (w, h) = l.size;
    let g = radius + 2;
    (0..6).flat_map(move |ring| {
        let d = ring * (h + 2);
        let spots = [
            (x + g + d / 2, y - g - h - d),     // right, above
            (x + g + d / 2, y + g + d),         // right, below
            (x - g - w - d / 2, y - g - h - d), // left, above
            (x - g - w - d / 2, y + g + d),     // left, below
            (x + g + d, y - h / 2),             // right
            (x - g - w - d, y - h / 2),         // left
            (x - w / 2, y - g - h - d),         // above
            (x - w / 2, y + g + d),             // below
        ];
        spots
            .into_iter()
            .map(move |(x0, y0)| Rect::new(x0, y0, x0 + w, y0 + h))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crowded_labels_do_not_overlap_each_other_or_the_points() {
        // Five points within a few pixels of one another, as cells of similar cost and quality.
        let marks = [(300, 200), (304, 203), (308, 199), (302, 207), (306, 205)];
        let labels: Vec<Label> = marks
            .iter()
            .map(|&at| Label {
                at,
                size: text_extent("q4_0-bf16 b64", 12),
                optional: false,
            })
            .collect();
        let bounds = Rect::new(0, 0, 760, 460);
        let placed: Vec<Placed> = place(&labels, &marks, 5, bounds, &[])
            .into_iter()
            .map(Option::unwrap)
            .collect();
        for (i, a) in placed.iter().enumerate() {
            assert_eq!(a.rect.overlap(&bounds), a.rect.area(), "inside the chart");
            for b in &placed[i + 1..] {
                assert_eq!(a.rect.overlap(&b.rect), 0, "{a:?} and {b:?} overlap");
            }
            for &(x, y) in &marks {
                let mark = Rect::new(x - 5, y - 5, x + 5, y + 5);
                assert_eq!(
                    a.rect.overlap(&mark),
                    0,
                    "{a:?} covers the point at {x},{y}"
                );
            }
        }
        assert!(!placed[0].far, "the first label sits beside its point");
        assert!(
            placed.iter().any(|p| p.far),
            "crowded labels move out, with leaders"
        );
    }

    #[test]
    fn labels_stay_inside_and_optional_ones_give_way() {
        // A point at the right edge: its label goes left.
        let bounds = Rect::new(0, 0, 200, 100);
        let one = Label {
            at: (195, 50),
            size: (60, 14),
            optional: false,
        };
        let p = place(&[one], &[one.at], 4, bounds, &[])[0].unwrap();
        assert!(
            p.rect.x1 <= 195 && p.rect.x0 >= 0,
            "left of its point, inside: {p:?}"
        );
        // No room at all: a required label still goes somewhere, an optional one is left out.
        let tiny = Rect::new(0, 0, 10, 10);
        let required = Label {
            at: (5, 5),
            size: (60, 14),
            optional: false,
        };
        let optional = Label {
            optional: true,
            ..required
        };
        let placed = place(&[required, optional], &[(5, 5)], 4, tiny, &[]);
        assert!(placed[0].is_some() && placed[1].is_none(), "{placed:?}");
    }
}
