//! The PDF of a [`Statement`], with [`pdf_writer`]: A4 pages, the standard Helvetica and Courier
//! fonts (every reader has them, so nothing is embedded and the text is extractable), a header
//! on every page (bank, holder, account, period), the summary on the first, the entries in a
//! table over as many pages as they need, totals and the closing balance on the last, and
//! "Page i of n" on each.
//!
//! **Deterministic**: the bytes are a function of the statement alone. Nothing reads a clock or a
//! random source; the document has no creation date; its file identifier (`/ID`) is the first
//! 16 bytes of a SHA-256 over the statement's id, totals and entry count. Rendering the same
//! statement twice gives the same bytes, so the object store's write-once `put` of a re-run is
//! a replay, never a conflict.
//!
//! Why `pdf-writer` (typst's) rather than `printpdf`: it writes exactly the objects it is told
//! to (no timestamps, no counters, no `/ID` of its own), it is small (four dependencies, all
//! already in most trees) and it is kept up to date by the typst project; `printpdf`'s 0.8+
//! releases pull in an HTML layout engine and number their trailer `/ID` from a process counter.
//!
//! Layout runs in integer tenths of a point (the page's matrix scales by 0.1), so no float
//! arithmetic is involved. Text is written in WinAnsiEncoding: characters outside it print as
//! `?`, control characters as spaces.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};
use sha2::{Digest, Sha256};

use super::statement::{Statement, format_amount};
use crate::ledger::Side;

/// A4, in points.
const A4_WIDTH_PT: f32 = 595.0;
const A4_HEIGHT_PT: f32 = 842.0;
/// Left margin.
const LEFT: i32 = 400;
/// Right edge of the rightmost column.
const RIGHT: i32 = 5550;
/// Baseline of the table header on the first page (below the summary) and on the others.
const TABLE_TOP_FIRST: i32 = 6440;
const TABLE_TOP_NEXT: i32 = 7160;
/// Distance between table rows.
const ROW_HEIGHT: i32 = 130;
/// No table row below this baseline (the footer lives under it).
const TABLE_BOTTOM: i32 = 900;
/// Baseline of the footer.
const FOOTER: i32 = 500;
/// Table font size (Courier: every character is 600/1000 of it wide).
const TABLE_SIZE: i32 = 80;
/// Width of a Courier character, in thousandths of the font size.
const COURIER_CHAR_WIDTH: i32 = 600;
/// Columns: date and reference start there; debit, credit and balance end there.
const COL_DATE: i32 = LEFT;
const COL_REFERENCE: i32 = 980;
const COL_DEBIT_RIGHT: i32 = 3600;
const COL_CREDIT_RIGHT: i32 = 4580;
const COL_BALANCE_RIGHT: i32 = RIGHT;
/// Most characters of a reference shown (longer ones end in `...`).
pub const REFERENCE_SHOWN_CHARS_MAX: usize = 34;
/// Table rows the totals block takes on the last page.
const TOTALS_ROWS: usize = 3;

const HELVETICA: Name<'static> = Name(b"F1");
const HELVETICA_BOLD: Name<'static> = Name(b"F2");
const COURIER: Name<'static> = Name(b"F3");
const COURIER_BOLD: Name<'static> = Name(b"F4");

/// How many table rows fit below a table header at `top`.
const fn rows_below(top: i32) -> usize {
    ((top - ROW_HEIGHT - TABLE_BOTTOM) / ROW_HEIGHT + 1) as usize
}

/// The rows of the table, in order, before they are placed on pages.
enum Row<'a> {
    Opening,
    Empty,
    Line(&'a super::statement::StatementLine),
}

/// The statement as a PDF document.
pub fn render(statement: &Statement) -> Vec<u8> {
    let mut rows = vec![Row::Opening];
    if statement.lines.is_empty() {
        rows.push(Row::Empty);
    }
    rows.extend(statement.lines.iter().map(Row::Line));
    let pages = paginate(&rows);
    let page_count = pages.len();

    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let info = Ref::new(3);
    let fonts = [
        (HELVETICA, Ref::new(4), "Helvetica"),
        (HELVETICA_BOLD, Ref::new(5), "Helvetica-Bold"),
        (COURIER, Ref::new(6), "Courier"),
        (COURIER_BOLD, Ref::new(7), "Courier-Bold"),
    ];
    // Pages and their content streams follow, two objects per page.
    let first_page_ref = 8;
    let page_ref = |i: usize| Ref::new(first_page_ref + 2 * i32::try_from(i).unwrap_or(i32::MAX / 4));
    let content_ref = |i: usize| Ref::new(first_page_ref + 2 * i32::try_from(i).unwrap_or(i32::MAX / 4) + 1);

    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree).kids((0..page_count).map(page_ref)).count(i32::try_from(page_count).unwrap_or(i32::MAX));
    let title = format!("Statement {} of account {}", statement.period(), statement.account.id);
    pdf.document_info(info).title(TextStr(&title)).producer(TextStr("bank-sdk statements"));
    for (_, id, base) in fonts {
        pdf.type1_font(id).base_font(Name(base.as_bytes())).encoding_predefined(Name(b"WinAnsiEncoding"));
    }
    for (index, range) in pages.iter().enumerate() {
        let mut page = pdf.page(page_ref(index));
        page.media_box(Rect::new(0.0, 0.0, A4_WIDTH_PT, A4_HEIGHT_PT));
        page.parent(tree);
        page.contents(content_ref(index));
        let mut resources = page.resources();
        let mut font_dict = resources.fonts();
        for (name, id, _) in fonts {
            font_dict.pair(name, id);
        }
        font_dict.finish();
        resources.finish();
        page.finish();
        let last = index + 1 == page_count;
        let content = page_content(statement, &rows[range.clone()], index, page_count, last);
        pdf.stream(content_ref(index), &content);
    }
    pdf.set_file_id((file_id(statement), file_id(statement)));
    pdf.finish()
}

/// The rows of each page: the first page holds fewer (the summary sits above its table), and
/// the last keeps room for the totals (a page of its own if the rows filled the previous one).
fn paginate(rows: &[Row<'_>]) -> Vec<std::ops::Range<usize>> {
    let mut pages = Vec::new();
    let mut start = 0;
    loop {
        let capacity = if pages.is_empty() { rows_below(TABLE_TOP_FIRST) } else { rows_below(TABLE_TOP_NEXT) };
        let remaining = rows.len() - start;
        if remaining + TOTALS_ROWS <= capacity {
            pages.push(start..rows.len());
            return pages;
        }
        let take = remaining.min(capacity);
        pages.push(start..start + take);
        start += take;
    }
}

/// 16 bytes naming the statement's content, for the trailer's `/ID`.
fn file_id(statement: &Statement) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(statement.id.to_string().as_bytes());
    for part in [statement.opening, statement.total_credits, statement.total_debits, statement.closing] {
        hash.update(b"\n");
        hash.update(part.to_string().as_bytes());
    }
    hash.update(format!("\n{}", statement.lines.len()).as_bytes());
    hash.finalize()[..16].to_vec()
}

fn page_content(statement: &Statement, rows: &[Row<'_>], index: usize, pages: usize, last: bool) -> Vec<u8> {
    let decimals = statement.account.currency.exponent();
    let amount = |value| format_amount(value, decimals);
    let mut page = Page::new();
    let account = &statement.account;
    let period = statement.period();
    page.text(HELVETICA_BOLD, 160, LEFT, 8020, &statement.bank_name);
    page.text(HELVETICA, 110, LEFT, 7840, "Account statement");
    page.text(HELVETICA, 90, LEFT, 7660, &format!("Account holder: {} (customer {})", account.name, account.owner));
    page.text(HELVETICA, 90, LEFT, 7520, &format!("Account: {}    Currency: {}", account.id, account.currency));
    let last_day = (period.end() - chrono::TimeDelta::days(1)).format("%Y-%m-%d");
    page.text(
        HELVETICA,
        90,
        LEFT,
        7380,
        &format!("Period: {period} ({} to {last_day}, UTC)", period.start().format("%Y-%m-%d")),
    );
    page.rule(7300);
    let top = if index == 0 {
        let credits = statement.lines.iter().filter(|l| l.side == Side::Credit).count();
        let debits = statement.lines.len() - credits;
        let summary = [
            ("Opening balance".to_owned(), statement.opening),
            (format!("Total credits ({credits})"), statement.total_credits),
            (format!("Total debits ({debits})"), statement.total_debits),
            ("Closing balance".to_owned(), statement.closing),
        ];
        for (i, (label, value)) in summary.iter().enumerate() {
            let y = 7100 - 150 * i32::try_from(i).unwrap_or(0);
            let bold = i + 1 == summary.len();
            page.text(if bold { HELVETICA_BOLD } else { HELVETICA }, 100, LEFT, y, label);
            page.right(if bold { COURIER_BOLD } else { COURIER }, 100, RIGHT, y, &amount(*value));
        }
        TABLE_TOP_FIRST
    } else {
        TABLE_TOP_NEXT
    };
    page.text(COURIER_BOLD, TABLE_SIZE, COL_DATE, top, "Date");
    page.text(COURIER_BOLD, TABLE_SIZE, COL_REFERENCE, top, "Reference");
    page.right(COURIER_BOLD, TABLE_SIZE, COL_DEBIT_RIGHT, top, "Debit");
    page.right(COURIER_BOLD, TABLE_SIZE, COL_CREDIT_RIGHT, top, "Credit");
    page.right(COURIER_BOLD, TABLE_SIZE, COL_BALANCE_RIGHT, top, "Balance");
    page.rule(top - 40);
    let mut y = top - ROW_HEIGHT - 20;
    for row in rows {
        match row {
            Row::Opening => {
                page.text(COURIER, TABLE_SIZE, COL_DATE, y, &period.start().format("%Y-%m-%d").to_string());
                page.text(COURIER, TABLE_SIZE, COL_REFERENCE, y, "Opening balance");
                page.right(COURIER, TABLE_SIZE, COL_BALANCE_RIGHT, y, &amount(statement.opening));
            }
            Row::Empty => page.text(COURIER, TABLE_SIZE, COL_REFERENCE, y, "No entries in this period"),
            Row::Line(line) => {
                page.text(COURIER, TABLE_SIZE, COL_DATE, y, &line.posted_at.format("%Y-%m-%d").to_string());
                page.text(COURIER, TABLE_SIZE, COL_REFERENCE, y, &shown_reference(&line.reference));
                let column = if line.side == Side::Debit { COL_DEBIT_RIGHT } else { COL_CREDIT_RIGHT };
                page.right(COURIER, TABLE_SIZE, column, y, &amount(line.amount));
                page.right(COURIER, TABLE_SIZE, COL_BALANCE_RIGHT, y, &amount(line.balance));
            }
        }
        y -= ROW_HEIGHT;
    }
    if last {
        page.rule(y + ROW_HEIGHT - 40);
        page.text(COURIER_BOLD, TABLE_SIZE, COL_REFERENCE, y, "Totals");
        page.right(COURIER_BOLD, TABLE_SIZE, COL_DEBIT_RIGHT, y, &amount(statement.total_debits));
        page.right(COURIER_BOLD, TABLE_SIZE, COL_CREDIT_RIGHT, y, &amount(statement.total_credits));
        page.right(COURIER_BOLD, TABLE_SIZE, COL_BALANCE_RIGHT, y, &amount(statement.closing));
        y -= ROW_HEIGHT;
        let closing = format!("Closing balance {} {}", amount(statement.closing), account.currency);
        page.right(COURIER_BOLD, TABLE_SIZE, COL_BALANCE_RIGHT, y, &closing);
    }
    page.text(HELVETICA, 80, LEFT, FOOTER, &format!("Page {} of {pages}", index + 1));
    page.right(COURIER, 70, RIGHT, FOOTER, &format!("Statement {}", statement.id));
    page.finish()
}

/// A page's content stream, in tenths of a point.
struct Page {
    content: Content,
}

impl Page {
    fn new() -> Self {
        let mut content = Content::new();
        // Everything below is in tenths of a point.
        content.transform([0.1, 0.0, 0.0, 0.1, 0.0, 0.0]);
        Page { content }
    }

    /// `text` with its left end at `x`.
    fn text(&mut self, font: Name<'_>, size: i32, x: i32, y: i32, text: &str) {
        let bytes = win_ansi(text);
        self.content.begin_text();
        self.content.set_font(font, f(size));
        self.content.set_text_matrix([1.0, 0.0, 0.0, 1.0, f(x), f(y)]);
        self.content.show(Str(&bytes));
        self.content.end_text();
    }

    /// `text` in a Courier font with its right end at `right`.
    fn right(&mut self, font: Name<'_>, size: i32, right: i32, y: i32, text: &str) {
        let chars = i32::try_from(text.chars().count()).unwrap_or(0);
        self.text(font, size, right - chars * size * COURIER_CHAR_WIDTH / 1000, y, text);
    }

    /// A thin horizontal line across the text width, just under `y`.
    fn rule(&mut self, y: i32) {
        self.content.set_line_width(5.0);
        self.content.move_to(f(LEFT), f(y));
        self.content.line_to(f(RIGHT), f(y));
        self.content.stroke();
    }

    fn finish(self) -> Vec<u8> {
        self.content.finish().into_vec()
    }
}

/// Layout coordinates fit an `f32` exactly (they are small integers).
#[allow(clippy::cast_precision_loss)]
fn f(value: i32) -> f32 {
    value as f32
}

/// A reference as the table shows it: control characters as spaces, at most
/// [`REFERENCE_SHOWN_CHARS_MAX`] characters (longer ones cut and ended with `...`).
fn shown_reference(reference: &str) -> String {
    let cleaned: String = reference.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if cleaned.chars().count() <= REFERENCE_SHOWN_CHARS_MAX {
        return cleaned;
    }
    let mut cut: String = cleaned.chars().take(REFERENCE_SHOWN_CHARS_MAX - 3).collect();
    cut.push_str("...");
    cut
}

/// `text` in WinAnsiEncoding: printable ASCII and Latin-1 as themselves, control characters as
/// spaces, anything else as `?`.
fn win_ansi(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match u32::from(c) {
            0x20..=0x7e | 0xa0..=0xff => u8::try_from(u32::from(c)).unwrap_or(b'?'),
            _ if c.is_control() => b' ',
            _ => b'?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_cut_and_cleaned() {
        assert_eq!(shown_reference("Rent\nMarch"), "Rent March");
        let long = "x".repeat(50);
        let shown = shown_reference(&long);
        assert_eq!(shown.chars().count(), REFERENCE_SHOWN_CHARS_MAX);
        assert!(shown.ends_with("..."));
        assert_eq!(win_ansi("Café €5"), vec![b'C', b'a', b'f', 0xe9, b' ', b'?', b'5']);
    }

    #[test]
    fn pages_hold_their_rows_and_the_totals_fit_on_the_last() {
        let first = rows_below(TABLE_TOP_FIRST);
        let next = rows_below(TABLE_TOP_NEXT);
        assert!(first > 30 && next > first, "{first} {next}");
        for count in [1, first - TOTALS_ROWS, first - TOTALS_ROWS + 1, first, first + next, 500] {
            let rows: Vec<Row<'_>> = (0..count).map(|_| Row::Empty).collect();
            let pages = paginate(&rows);
            assert_eq!(pages.iter().map(|r| r.len()).sum::<usize>(), count, "{count} rows");
            assert_eq!(pages.first().map(|r| r.start), Some(0));
            for pair in pages.windows(2) {
                assert_eq!(pair[0].end, pair[1].start);
            }
            let last = pages.last().expect("a page");
            let capacity = if pages.len() == 1 { first } else { next };
            assert!(last.len() + TOTALS_ROWS <= capacity, "{count}: totals fit");
        }
    }
}
