//! A linear pre-scan of YAML document content that refuses flow collections (`[` / `{`) nested
//! deeper than [`MAX_FLOW_DEPTH`] before the content reaches libyaml.
//!
//! Why: libyaml (under `serde_yaml_ng`) re-checks every pending simple key on every token, one per
//! open flow level, so 64 KB of `{a: [` costs O(n²) — about a second in a release build and far
//! more in a debug one — before `serde_yaml_ng`'s own recursion limit (128) is ever consulted.
//! Aliases are already bounded by `serde_yaml_ng` ("repetition limit exceeded"), block nesting is
//! cheap, and JSON content goes through `serde_json`, whose recursion limit is checked as it reads.
//!
//! The scan is not a YAML parser. Its one promise: its depth is never *below* the depth libyaml
//! reaches, so nothing it lets through can nest deeper than the limit. Where it cannot tell what
//! libyaml will see, it errs high:
//! * every `[` / `{` at a place a token can start is counted, in block and flow context alike;
//! * text is skipped only where libyaml must agree it is not structure: comments, quoted scalars
//!   that start where a token starts and close on the same line, and block scalar (`|`, `>`)
//!   content, found with libyaml's own indentation rule and a parent indentation never below
//!   libyaml's;
//! * in text whose quoting is uncertain (a quote left open at the end of a line, a quote in the
//!   middle of a flow plain scalar), openers still count and a closer only cancels an opener
//!   seen in that same text;
//! * lines end where libyaml ends them: `\n`, `\r`, NEL, LS and PS.
//!
//! Erring high can refuse a legitimate document only if it leaves dozens of brackets unclosed
//! inside multi-line quoted strings; real Run Command documents nest flow collections a few
//! levels at most.

use crate::error::{CoreError, CoreResult};

/// Deepest flow nesting accepted; `serde_yaml_ng` refuses anything past 128 levels in any case.
pub const MAX_FLOW_DEPTH: usize = 64;

/// Refuses YAML content whose flow collections may nest deeper than [`MAX_FLOW_DEPTH`].
pub fn check_yaml(content: &str) -> CoreResult<()> {
    let mut scan = Scan::default();
    for line in lines(content.as_bytes()) {
        scan.line(line)?;
    }
    Ok(())
}

/// Splits on every byte sequence libyaml treats as a line break.
fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut i = 0;
        while i < rest.len() {
            let (brk, len) = match rest[i] {
                b'\n' => (true, 1),
                b'\r' => (
                    true,
                    if rest.get(i + 1) == Some(&b'\n') {
                        2
                    } else {
                        1
                    },
                ),
                0xC2 if rest.get(i + 1) == Some(&0x85) => (true, 2),
                0xE2 if rest.get(i + 1) == Some(&0x80)
                    && matches!(rest.get(i + 2), Some(0xA8 | 0xA9)) =>
                {
                    (true, 3)
                }
                _ => (false, 1),
            };
            if brk {
                let line = &rest[..i];
                rest = &rest[i + len..];
                return Some(line);
            }
            i += 1;
        }
        let line = rest;
        rest = &[];
        Some(line)
    })
}

fn blank(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

fn flow_indicator(c: u8) -> bool {
    matches!(c, b',' | b'[' | b']' | b'{' | b'}')
}

/// True when `l[i]` is followed by a blank or the end of the line.
fn blank_after(l: &[u8], i: usize) -> bool {
    l.get(i + 1).is_none_or(|&c| blank(c))
}

/// Block scalar content still being skipped.
struct BlockScalar {
    /// libyaml's `parser->indent` for the scalar, or an estimate at or above it.
    parent: isize,
    /// The explicit indentation indicator (`|2`), if any.
    explicit: Option<usize>,
    /// Content indentation, once known.
    indent: Option<usize>,
    /// Widest leading all-space line before the first content line (libyaml counts it).
    leading: usize,
}

/// Text whose quoting is uncertain: a quote opened with `quote`, not yet closed.
struct Uncertain {
    quote: u8,
    /// Openers seen inside it that no closer inside it has cancelled.
    open: usize,
}

#[derive(Default)]
struct Scan {
    /// Flow depth (never below libyaml's).
    depth: usize,
    uncertain: Option<Uncertain>,
    block: Option<BlockScalar>,
    /// Flow context: the next significant byte starts a token.
    flow_token: bool,
    /// Flow context: inside a plain scalar.
    flow_plain: bool,
}

fn too_deep() -> CoreError {
    CoreError::InvalidDocumentContent(format!(
        "The document content nests flow collections ([ ] or {{ }}) more than {MAX_FLOW_DEPTH} levels deep."
    ))
}

/// Index just past a quoted scalar opened at `l[start]`, or `None` when it stays open.
fn quote_end(l: &[u8], start: usize) -> Option<usize> {
    let q = l[start];
    let mut i = start + 1;
    while i < l.len() {
        match l[i] {
            b'\\' if q == b'"' => i += 2,
            b'\'' if q == b'\'' && l.get(i + 1) == Some(&b'\'') => i += 2,
            c if c == q => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Index of the first blank or flow indicator at or after `i` (the end of an anchor, tag or alias).
fn name_end(l: &[u8], mut i: usize) -> usize {
    while i < l.len() && !blank(l[i]) && !flow_indicator(l[i]) {
        i += 1;
    }
    i
}

impl Scan {
    fn open(&mut self) -> CoreResult<()> {
        let extra = self.uncertain.as_ref().map_or(0, |u| u.open);
        if self.depth + extra + 1 > MAX_FLOW_DEPTH {
            return Err(too_deep());
        }
        match &mut self.uncertain {
            Some(u) => u.open += 1,
            None => self.depth += 1,
        }
        Ok(())
    }

    fn line(&mut self, l: &[u8]) -> CoreResult<()> {
        let indent = l.iter().take_while(|&&c| c == b' ').count();
        if self.in_block_scalar(l, indent) {
            return Ok(());
        }
        let mut i = 0;
        if self.uncertain.is_some() {
            match self.uncertain_text(l, 0)? {
                Some(next) => i = next,
                None => return Ok(()),
            }
        }
        self.rest_of_line(l, i, indent)
    }

    /// Skips a line of block scalar content; ends the scalar at the first line that is not.
    fn in_block_scalar(&mut self, l: &[u8], indent: usize) -> bool {
        let Some(b) = &mut self.block else {
            return false;
        };
        let all_space = indent == l.len();
        let content_indent = match (b.explicit, b.indent) {
            (Some(n), _) => Some(if b.parent >= 0 {
                b.parent as usize + n
            } else {
                n
            }),
            (None, known) => known,
        };
        match content_indent {
            Some(ci) if all_space || indent >= ci => return true,
            Some(_) => {}
            None if all_space => {
                b.leading = b.leading.max(indent);
                return true;
            }
            None => {
                let ci = b.leading.max(indent).max((b.parent + 1).max(1) as usize);
                if indent >= ci {
                    b.indent = Some(ci);
                    return true;
                }
            }
        }
        self.block = None;
        false
    }

    /// Scans text of uncertain quoting from `l[i]`; the index after its closing quote, or `None`
    /// when the line ends first.
    fn uncertain_text(&mut self, l: &[u8], mut i: usize) -> CoreResult<Option<usize>> {
        let q = match &self.uncertain {
            Some(u) => u.quote,
            None => return Ok(Some(i)),
        };
        while i < l.len() {
            match l[i] {
                b'\\' if q == b'"' => i += 1,
                b'\'' if q == b'\'' && l.get(i + 1) == Some(&b'\'') => i += 1,
                c if c == q => {
                    let open = self.uncertain.take().map_or(0, |u| u.open);
                    self.depth += open;
                    // Whatever that text was, what follows may still be a plain scalar.
                    self.flow_token = false;
                    self.flow_plain = true;
                    return Ok(Some(i + 1));
                }
                b'[' | b'{' => self.open()?,
                b']' | b'}' => {
                    if let Some(u) = &mut self.uncertain {
                        u.open = u.open.saturating_sub(1);
                    }
                }
                _ => {}
            }
            i += 1;
        }
        Ok(None)
    }

    fn rest_of_line(&mut self, l: &[u8], mut i: usize, indent: usize) -> CoreResult<()> {
        // Block context state, for this line only.
        let mut token = i == 0;
        let mut node_col = indent;
        let mut scalar_col = indent;
        let mut parent: Option<usize> = None;
        while i < l.len() {
            let c = l[i];
            if blank(c) {
                i += 1;
                continue;
            }
            let after_blank = i == 0 || blank(l[i - 1]);
            if c == b'#' && after_blank {
                return Ok(());
            }
            if self.depth > 0 {
                i = self.flow_byte(l, i)?;
                if self.uncertain.is_some() {
                    match self.uncertain_text(l, i)? {
                        Some(next) => i = next,
                        None => return Ok(()),
                    }
                }
                if self.depth == 0 {
                    // A flow collection just closed: what follows is not a token start.
                    token = false;
                }
                continue;
            }
            if !token {
                if c == b':' && blank_after(l, i) {
                    parent = Some(scalar_col);
                    token = true;
                    node_col = i + 1;
                }
                i += 1;
                continue;
            }
            if i == 0 && (l.starts_with(b"---") || l.starts_with(b"...")) && blank_after(l, 2) {
                i = 3;
                continue;
            }
            match c {
                b'-' | b'?' | b':' if blank_after(l, i) => {
                    parent = Some(if c == b':' { node_col } else { i });
                    node_col = i + 2;
                }
                b'%' if i == 0 => return Ok(()),
                b'[' | b'{' => {
                    self.open()?;
                    self.flow_token = true;
                    self.flow_plain = false;
                }
                b'"' | b'\'' => {
                    scalar_col = i;
                    token = false;
                    match quote_end(l, i) {
                        Some(end) => {
                            i = end;
                            continue;
                        }
                        None => {
                            self.uncertain = Some(Uncertain { quote: c, open: 0 });
                            match self.uncertain_text(l, i + 1)? {
                                Some(next) => {
                                    i = next;
                                    continue;
                                }
                                None => return Ok(()),
                            }
                        }
                    }
                }
                b'&' | b'!' => {
                    i = name_end(l, i + 1);
                    continue;
                }
                b'*' => {
                    token = false;
                    scalar_col = i;
                    i = name_end(l, i + 1);
                    continue;
                }
                b'|' | b'>' => {
                    if let Some(explicit) = block_header(&l[i + 1..]) {
                        self.block = Some(BlockScalar {
                            parent: parent.map_or(i as isize - 1, |p| p as isize),
                            explicit,
                            indent: None,
                            leading: 0,
                        });
                        return Ok(());
                    }
                    token = false;
                    scalar_col = i;
                }
                _ => {
                    token = false;
                    scalar_col = i;
                }
            }
            i += 1;
        }
        Ok(())
    }

    /// One significant byte in flow context; returns the index to continue from.
    fn flow_byte(&mut self, l: &[u8], i: usize) -> CoreResult<usize> {
        let c = l[i];
        match c {
            b'[' | b'{' => {
                self.open()?;
                self.flow_token = true;
                self.flow_plain = false;
            }
            b']' | b'}' => {
                self.depth -= 1;
                self.flow_token = false;
                self.flow_plain = false;
            }
            b',' => {
                self.flow_token = true;
                self.flow_plain = false;
            }
            b':' => {
                let indicator =
                    !self.flow_plain || l.get(i + 1).is_none_or(|&n| blank(n) || flow_indicator(n));
                if indicator {
                    self.flow_token = true;
                    self.flow_plain = false;
                }
            }
            b'?' if self.flow_token && blank_after(l, i) => {}
            b'"' | b'\'' if self.flow_token => {
                self.flow_token = false;
                self.flow_plain = false;
                match quote_end(l, i) {
                    Some(end) => return Ok(end),
                    None => {
                        self.uncertain = Some(Uncertain { quote: c, open: 0 });
                        return Ok(i + 1);
                    }
                }
            }
            // A quote inside a plain scalar is literal to libyaml; if that reading were wrong,
            // closers inside would be miscounted, so the text until its match is uncertain.
            b'"' | b'\'' => {
                self.uncertain = Some(Uncertain { quote: c, open: 0 });
                return Ok(i + 1);
            }
            b'&' | b'!' if self.flow_token => return Ok(name_end(l, i + 1)),
            b'*' if self.flow_token => {
                self.flow_token = false;
                self.flow_plain = false;
                return Ok(name_end(l, i + 1));
            }
            _ => {
                if self.flow_token {
                    self.flow_token = false;
                    self.flow_plain = true;
                }
            }
        }
        Ok(i + 1)
    }
}

/// For the bytes after a `|` or `>`: `Some(explicit indentation)` when they form a block scalar
/// header (indicators, then blanks, then an optional comment), `None` when they do not.
fn block_header(rest: &[u8]) -> Option<Option<usize>> {
    let mut explicit = None;
    let mut i = 0;
    while i < rest.len() && i < 2 {
        match rest[i] {
            b'+' | b'-' => {}
            d @ b'1'..=b'9' if explicit.is_none() => explicit = Some((d - b'0') as usize),
            _ => break,
        }
        i += 1;
    }
    let tail = &rest[i..];
    let first = tail.iter().position(|&c| !blank(c));
    match first {
        None => Some(explicit),
        Some(p) if p > 0 && tail[p] == b'#' => Some(explicit),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests;
