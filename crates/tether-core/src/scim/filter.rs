//! The filter AST and its recursive-descent parser (RFC 7644 §3.4.2.2, figure 1):
//!
//! ```text
//! FILTER    = attrExp / logExp / valuePath / *1"not" "(" FILTER ")" / "(" FILTER ")"
//! valuePath = attrPath "[" valFilter "]"        ; valFilter: a FILTER without valuePath
//! attrExp   = (attrPath SP "pr") / (attrPath SP compareOp SP compValue)
//! logExp    = FILTER SP ("and" / "or") SP FILTER ; "and" binds tighter than "or"
//! compValue = false / null / true / number / string   ; JSON (RFC 7159)
//! attrPath  = [URI ":"] ATTRNAME *1subAttr
//! ```
//!
//! Operators, `and`/`or`/`not`, `pr` and `true`/`false`/`null` are accepted in any case
//! (`userName EQ "x"`); they are not reserved words, so an attribute may be called `not` or
//! `pr`. Blanks around tokens may be any ASCII white space and may be repeated. One parser
//! level = one function: [`Parser::or_chain`] → [`Parser::and_chain`] → [`Parser::unary`].

use super::path::{AttrPath, PatchPath};
use super::{MAX_FILTER_DEPTH, MAX_FILTER_LEN};
use std::fmt;

/// A comparison operator (RFC 7644 §3.4.2.2, table 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    pub const ALL: [CompareOp; 9] = [
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Co,
        CompareOp::Sw,
        CompareOp::Ew,
        CompareOp::Gt,
        CompareOp::Ge,
        CompareOp::Lt,
        CompareOp::Le,
    ];

    /// The lower-case operator as written in filters.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    /// Parses an operator, ignoring case.
    pub fn parse(word: &str) -> Option<CompareOp> {
        CompareOp::ALL
            .into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(word))
    }

    fn is_ordering(self) -> bool {
        matches!(
            self,
            CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
        )
    }

    fn is_substring(self) -> bool {
        matches!(self, CompareOp::Co | CompareOp::Sw | CompareOp::Ew)
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The value a comparison compares against: a JSON scalar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompValue {
    String(String),
    Number(serde_json::Number),
    Bool(bool),
    Null,
}

impl fmt::Display for CompValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompValue::String(s) => f.write_str(&serde_json::Value::from(s.as_str()).to_string()),
            CompValue::Number(n) => write!(f, "{n}"),
            CompValue::Bool(b) => write!(f, "{b}"),
            CompValue::Null => f.write_str("null"),
        }
    }
}

/// A parsed filter. Trees built by [`parse_filter`] are at most [`MAX_FILTER_DEPTH`] high and
/// their `and`/`or` chains are balanced; `Display` prints them back so that parsing the text
/// again gives an equal tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: CompValue,
    },
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `emails[type eq "work"]`: some value of `path` matches `filter`, whose paths name
    /// sub-attributes of `path`.
    ValuePath {
        path: AttrPath,
        filter: Box<Filter>,
    },
}

impl Filter {
    /// The height of the tree (a comparison is 1).
    pub fn height(&self) -> usize {
        match self {
            Filter::Compare { .. } | Filter::Present(_) => 1,
            Filter::Not(inner) | Filter::ValuePath { filter: inner, .. } => 1 + inner.height(),
            Filter::And(a, b) | Filter::Or(a, b) => 1 + a.height().max(b.height()),
        }
    }

    /// The operands of a chain of the same operator as `self`, left to right (`self` alone if
    /// it is neither `and` nor `or`).
    fn chain_operands(&self) -> Vec<&Filter> {
        let mut out = Vec::new();
        self.push_chain_operands(self.kind(), &mut out);
        out
    }

    fn push_chain_operands<'a>(&'a self, kind: u8, out: &mut Vec<&'a Filter>) {
        match self {
            Filter::And(a, b) | Filter::Or(a, b) if self.kind() == kind => {
                a.push_chain_operands(kind, out);
                b.push_chain_operands(kind, out);
            }
            _ => out.push(self),
        }
    }

    fn kind(&self) -> u8 {
        match self {
            Filter::And(..) => 1,
            Filter::Or(..) => 2,
            _ => 0,
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Compare { path, op, value } => write!(f, "{path} {op} {value}"),
            Filter::Present(path) => write!(f, "{path} pr"),
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::ValuePath { path, filter } => write!(f, "{path}[{filter}]"),
            Filter::And(..) | Filter::Or(..) => {
                let is_and = matches!(self, Filter::And(..));
                for (i, operand) in self.chain_operands().into_iter().enumerate() {
                    if i > 0 {
                        f.write_str(if is_and { " and " } else { " or " })?;
                    }
                    // An `or` inside an `and` needs its parentheses; nothing else does.
                    if is_and && matches!(operand, Filter::Or(..)) {
                        write!(f, "({operand})")?;
                    } else {
                        write!(f, "{operand}")?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Why a filter or PATCH path does not parse, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter at character {position}: {message}")]
pub struct FilterError {
    /// 1-based index, in characters (Unicode scalar values), of the character where the text
    /// stopped making sense; one past the last character for "unexpected end".
    pub position: usize,
    pub message: String,
}

/// Parses a filter (the `filter` query parameter or `/.search` body member).
pub fn parse_filter(text: &str) -> Result<Filter, FilterError> {
    let mut parser = Parser::new(text)?;
    parser.skip_blanks();
    if parser.at_end() {
        return Err(parser.error("the filter is empty"));
    }
    let node = parser.or_chain(false)?;
    parser.skip_blanks();
    if !parser.at_end() {
        return Err(parser.unexpected_after_expression());
    }
    Ok(node.filter)
}

pub(super) fn parse_patch_path_impl(text: &str) -> Result<PatchPath, FilterError> {
    let mut parser = Parser::new(text)?;
    parser.skip_blanks();
    if parser.at_end() {
        return Err(parser.error("the path is empty"));
    }
    let attr = parser.attr_path(false)?;
    parser.skip_blanks();
    let mut path = PatchPath {
        attr,
        filter: None,
        sub_attr: None,
    };
    if parser.peek() == Some(b'[') {
        let open = parser.pos;
        path.filter = Some(parser.value_filter(&path.attr, open)?.filter);
        if parser.peek() == Some(b'.') {
            parser.pos += 1;
            let start = parser.pos;
            let word = parser.word();
            if word.is_empty() {
                return Err(parser.expected("a sub-attribute name after \".\""));
            }
            if let Some(dot) = word.find('.') {
                return Err(parser.error_at(
                    start + dot,
                    "a PATCH path has at most one sub-attribute after \"]\"",
                ));
            }
            check_attr_name(word).map_err(|m| parser.error_at(start, m))?;
            path.sub_attr = Some(word.to_string());
        }
    }
    parser.skip_blanks();
    if !parser.at_end() {
        return Err(parser.expected("the end of the path"));
    }
    Ok(path)
}

pub(super) fn parse_attr_path_only(text: &str) -> Result<AttrPath, FilterError> {
    let mut parser = Parser::new(text)?;
    parser.skip_blanks();
    let path = parser.attr_path(false)?;
    parser.skip_blanks();
    if !parser.at_end() {
        return Err(parser.expected("the end of the attribute path"));
    }
    Ok(path)
}

/// A parsed subtree with its height.
struct Node {
    filter: Filter,
    height: usize,
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    /// Byte offset of the next unread byte; always on a character boundary.
    pos: usize,
    /// Open `(`, `not (` and `[` around `pos`.
    nesting: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Result<Self, FilterError> {
        let parser = Parser {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            nesting: 0,
        };
        if text.len() > MAX_FILTER_LEN {
            let mut at = MAX_FILTER_LEN;
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            return Err(parser.error_at(
                at,
                format!("longer than the limit of {MAX_FILTER_LEN} bytes"),
            ));
        }
        Ok(parser)
    }

    // ---- errors ----

    fn error_at(&self, byte: usize, message: impl Into<String>) -> FilterError {
        let position = self
            .text
            .get(..byte)
            .map_or(byte, |before| before.chars().count())
            + 1;
        FilterError {
            position,
            message: message.into(),
        }
    }

    fn error(&self, message: impl Into<String>) -> FilterError {
        self.error_at(self.pos, message)
    }

    /// What is at `pos`, for messages: `end of input`, `"word"` or `"c"`.
    fn found(&self) -> String {
        let rest = &self.text[self.pos..];
        let Some(first) = rest.chars().next() else {
            return "the end of the text".to_string();
        };
        let word_len = rest.bytes().take_while(|b| is_path_byte(*b)).count();
        let shown: String = if word_len > 0 {
            rest[..word_len].chars().take(40).collect()
        } else {
            first.to_string()
        };
        format!("{shown:?}")
    }

    fn expected(&self, what: &str) -> FilterError {
        self.error(format!("expected {what}, found {}", self.found()))
    }

    fn unexpected_after_expression(&self) -> FilterError {
        match self.peek() {
            Some(b')') => self.error("\")\" without a matching \"(\""),
            Some(b']') => self.error("\"]\" without a matching \"[\""),
            _ => self.expected("\"and\", \"or\" or the end of the filter"),
        }
    }

    fn depth_error(&self) -> FilterError {
        self.error(format!("nested deeper than {MAX_FILTER_DEPTH} levels"))
    }

    // ---- characters ----

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_blanks(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
        self.pos > start
    }

    /// Reads the longest run of attribute-path characters (possibly empty).
    fn word(&mut self) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(is_path_byte) {
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    /// The word at `pos` without consuming it.
    fn peek_word(&self) -> &'a str {
        let rest = &self.bytes[self.pos..];
        let len = rest.iter().take_while(|b| is_path_byte(**b)).count();
        &self.text[self.pos..self.pos + len]
    }

    /// After blanks, is the next word `keyword` (any case)? Consumes nothing.
    fn next_word_is(&self, keyword: &str) -> bool {
        let mut at = self.pos;
        while self.bytes.get(at).is_some_and(|b| b.is_ascii_whitespace()) {
            at += 1;
        }
        let len = self.bytes[at..]
            .iter()
            .take_while(|b| is_path_byte(**b))
            .count();
        self.text[at..at + len].eq_ignore_ascii_case(keyword)
    }

    // ---- grammar ----

    /// `and_chain ("or" and_chain)*`, built as a balanced tree.
    fn or_chain(&mut self, in_value_filter: bool) -> Result<Node, FilterError> {
        let mut operands = Vec::new();
        loop {
            let operand = self.and_chain(in_value_filter)?;
            push_operands(operand, 2, &mut operands);
            let before = self.pos;
            self.skip_blanks();
            if self.next_word_is("or") {
                self.word();
                continue;
            }
            self.pos = before;
            break;
        }
        self.balanced(operands, false)
    }

    /// `unary ("and" unary)*`, built as a balanced tree.
    fn and_chain(&mut self, in_value_filter: bool) -> Result<Node, FilterError> {
        let mut operands = Vec::new();
        loop {
            let operand = self.unary(in_value_filter)?;
            push_operands(operand, 1, &mut operands);
            let before = self.pos;
            self.skip_blanks();
            if self.next_word_is("and") {
                self.word();
                continue;
            }
            self.pos = before;
            break;
        }
        self.balanced(operands, true)
    }

    /// Builds a balanced `and` (or `or`) tree of `operands`, checking its height.
    fn balanced(&self, mut operands: Vec<Node>, is_and: bool) -> Result<Node, FilterError> {
        if operands.len() == 1 {
            if let Some(only) = operands.pop() {
                return Ok(only);
            }
        }
        let right = operands.split_off(operands.len() / 2);
        if operands.is_empty() || right.is_empty() {
            return Err(self.error("internal error: empty chain"));
        }
        let left = self.balanced(operands, is_and)?;
        let right = self.balanced(right, is_and)?;
        let height = 1 + left.height.max(right.height);
        if height > MAX_FILTER_DEPTH {
            return Err(self.depth_error());
        }
        let (a, b) = (Box::new(left.filter), Box::new(right.filter));
        Ok(Node {
            filter: if is_and {
                Filter::And(a, b)
            } else {
                Filter::Or(a, b)
            },
            height,
        })
    }

    /// `"(" FILTER ")"`, `not "(" FILTER ")"`, `valuePath` or `attrExp`.
    fn unary(&mut self, in_value_filter: bool) -> Result<Node, FilterError> {
        self.skip_blanks();
        if self.peek() == Some(b'(') {
            return self.group(in_value_filter);
        }
        let start = self.pos;
        let word = self.peek_word();
        if word.eq_ignore_ascii_case("not") {
            self.word();
            self.skip_blanks();
            if self.peek() == Some(b'(') {
                let inner = self.group(in_value_filter)?;
                return self.wrap(inner, Filter::Not);
            }
            // `not` may still be an attribute called "not" (`not pr`, `not eq 1`).
            let next = self.peek_word();
            let is_attribute = next.eq_ignore_ascii_case("pr")
                || CompareOp::parse(next).is_some()
                || self.peek() == Some(b'[');
            if !is_attribute {
                return Err(self.expected("\"(\" after \"not\""));
            }
            self.pos = start;
        }
        if word.is_empty() {
            return Err(match self.peek() {
                Some(b')') => self.error("expected an expression before \")\""),
                Some(b']') => self.error("expected an expression before \"]\""),
                None if self.nesting == 0 && start == 0 => self.error("the filter is empty"),
                _ => self.expected("an attribute path, \"not\" or \"(\""),
            });
        }
        let path = self.attr_path(in_value_filter)?;
        let after_path = self.pos;
        let blank = self.skip_blanks();
        if self.peek() == Some(b'[') {
            if in_value_filter {
                return Err(self.error("a value filter cannot contain another value filter"));
            }
            let open = self.pos;
            let node = self.value_filter(&path, open)?;
            if self.peek() == Some(b'.') {
                return Err(self.error(
                    "a sub-attribute after \"]\" is only allowed in PATCH paths; \
                     write the comparison inside the brackets",
                ));
            }
            return self.wrap(node, |inner| Filter::ValuePath {
                path,
                filter: inner,
            });
        }
        if !blank {
            self.pos = after_path;
            return Err(self.expected("a blank and an operator after the attribute path"));
        }
        let op_start = self.pos;
        let op_word = self.word();
        if op_word.eq_ignore_ascii_case("pr") {
            return Ok(Node {
                filter: Filter::Present(path),
                height: 1,
            });
        }
        let Some(op) = CompareOp::parse(op_word) else {
            self.pos = op_start;
            return Err(self.expected(
                "an operator (eq, ne, co, sw, ew, gt, ge, lt, le or pr) after the attribute path",
            ));
        };
        if !self.skip_blanks() {
            return Err(self.expected(&format!("a blank after \"{op_word}\"")));
        }
        let value_start = self.pos;
        let value = self.comp_value()?;
        check_operand(op, &value).map_err(|m| self.error_at(value_start, m))?;
        Ok(Node {
            filter: Filter::Compare { path, op, value },
            height: 1,
        })
    }

    /// `"(" FILTER ")"` at `pos`.
    fn group(&mut self, in_value_filter: bool) -> Result<Node, FilterError> {
        self.enter()?;
        self.pos += 1;
        let node = self.or_chain(in_value_filter)?;
        self.skip_blanks();
        if self.peek() != Some(b')') {
            return Err(match self.peek() {
                Some(b']') => self.error("\"]\" where \")\" was expected"),
                _ => self.expected("\"and\", \"or\" or \")\""),
            });
        }
        self.pos += 1;
        self.nesting -= 1;
        Ok(node)
    }

    /// `"[" valFilter "]"` at `pos` (the `[` at byte `open`).
    fn value_filter(&mut self, outer: &AttrPath, open: usize) -> Result<Node, FilterError> {
        if outer.sub_attr.is_some() {
            return Err(self.error_at(
                open,
                "a value filter applies to an attribute, not to a sub-attribute",
            ));
        }
        self.enter()?;
        self.pos += 1;
        self.skip_blanks();
        if self.peek() == Some(b']') {
            return Err(self.error("empty value filter \"[]\""));
        }
        let node = self.or_chain(true)?;
        self.skip_blanks();
        if self.peek() != Some(b']') {
            return Err(match self.peek() {
                Some(b')') => self.error("\")\" without a matching \"(\""),
                _ => self.expected("\"and\", \"or\" or \"]\""),
            });
        }
        self.pos += 1;
        self.nesting -= 1;
        Ok(node)
    }

    fn enter(&mut self) -> Result<(), FilterError> {
        if self.nesting >= MAX_FILTER_DEPTH {
            return Err(self.depth_error());
        }
        self.nesting += 1;
        Ok(())
    }

    fn wrap(
        &self,
        inner: Node,
        make: impl FnOnce(Box<Filter>) -> Filter,
    ) -> Result<Node, FilterError> {
        let height = inner.height + 1;
        if height > MAX_FILTER_DEPTH {
            return Err(self.depth_error());
        }
        Ok(Node {
            filter: make(Box::new(inner.filter)),
            height,
        })
    }

    /// `[URI ":"] ATTRNAME ["." ATTRNAME]` at `pos`. Inside a value filter, a bare ATTRNAME.
    fn attr_path(&mut self, in_value_filter: bool) -> Result<AttrPath, FilterError> {
        let start = self.pos;
        let word = self.word();
        if word.is_empty() {
            return Err(self.expected("an attribute path"));
        }
        let (uri, rest, rest_start) = match word.rfind(':') {
            Some(colon) => (Some(&word[..colon]), &word[colon + 1..], start + colon + 1),
            None => (None, word, start),
        };
        if let Some(uri) = uri {
            if uri.is_empty() || uri.ends_with(':') || !uri.contains(':') {
                return Err(self.error_at(
                    start,
                    format!("{word:?} is not a schema URI followed by an attribute name"),
                ));
            }
            if in_value_filter {
                return Err(self.error_at(
                    start,
                    "paths inside a value filter name sub-attributes; they have no schema URI",
                ));
            }
        }
        let (name, sub) = match rest.split_once('.') {
            Some((name, sub)) => (name, Some(sub)),
            None => (rest, None),
        };
        check_attr_name(name).map_err(|m| self.error_at(rest_start, m))?;
        if let Some(sub) = sub {
            let sub_start = rest_start + name.len() + 1;
            if in_value_filter {
                return Err(self.error_at(
                    sub_start - 1,
                    "paths inside a value filter name one sub-attribute, without \".\"",
                ));
            }
            if let Some(dot) = sub.find('.') {
                return Err(self.error_at(
                    sub_start + dot,
                    "an attribute path has at most one sub-attribute",
                ));
            }
            check_attr_name(sub).map_err(|m| self.error_at(sub_start, m))?;
        }
        Ok(AttrPath {
            uri: uri.map(str::to_string),
            name: name.to_string(),
            sub_attr: sub.map(str::to_string),
        })
    }

    /// A JSON scalar at `pos`.
    fn comp_value(&mut self) -> Result<CompValue, FilterError> {
        let start = self.pos;
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => {
                let word = self.word();
                if word.eq_ignore_ascii_case("true") {
                    Ok(CompValue::Bool(true))
                } else if word.eq_ignore_ascii_case("false") {
                    Ok(CompValue::Bool(false))
                } else if word.eq_ignore_ascii_case("null") {
                    Ok(CompValue::Null)
                } else {
                    self.pos = start;
                    Err(self
                        .expected("a value: a \"quoted string\", a number, true, false or null"))
                }
            }
        }
    }

    /// A JSON string at `pos` (the opening quote).
    fn string(&mut self) -> Result<CompValue, FilterError> {
        let start = self.pos;
        let mut at = start + 1;
        loop {
            match self.bytes.get(at) {
                None => return Err(self.error_at(start, "a string without its closing quote")),
                Some(b'\\') => at += 2,
                Some(b'"') => break,
                Some(_) => at += 1,
            }
        }
        let literal = &self.text[start..=at];
        match serde_json::from_str::<String>(literal) {
            Ok(s) => {
                self.pos = at + 1;
                Ok(CompValue::String(s))
            }
            Err(e) => {
                // serde_json counts columns from 1 in bytes of this one-line literal.
                let column = e.column().saturating_sub(1).min(literal.len());
                let mut byte = start + column;
                while !self.text.is_char_boundary(byte) {
                    byte -= 1;
                }
                let message = e.to_string();
                let message = message
                    .split(" at line ")
                    .next()
                    .unwrap_or(message.as_str());
                Err(self.error_at(byte, format!("invalid JSON string: {message}")))
            }
        }
    }

    /// A JSON number at `pos`.
    fn number(&mut self) -> Result<CompValue, FilterError> {
        let start = self.pos;
        let mut at = start;
        let digits = |at: &mut usize, bytes: &[u8]| {
            let from = *at;
            while bytes.get(*at).is_some_and(u8::is_ascii_digit) {
                *at += 1;
            }
            *at - from
        };
        if self.bytes.get(at) == Some(&b'-') {
            at += 1;
        }
        let int_start = at;
        let int_digits = digits(&mut at, self.bytes);
        if int_digits == 0 {
            return Err(self.error_at(at, "expected a digit"));
        }
        if int_digits > 1 && self.bytes[int_start] == b'0' {
            return Err(self.error_at(int_start, "a number cannot start with 0"));
        }
        if self.bytes.get(at) == Some(&b'.') {
            at += 1;
            if digits(&mut at, self.bytes) == 0 {
                return Err(self.error_at(at, "expected a digit after \".\""));
            }
        }
        if matches!(self.bytes.get(at), Some(b'e' | b'E')) {
            at += 1;
            if matches!(self.bytes.get(at), Some(b'+' | b'-')) {
                at += 1;
            }
            if digits(&mut at, self.bytes) == 0 {
                return Err(self.error_at(at, "expected a digit in the exponent"));
            }
        }
        if self.bytes.get(at).is_some_and(|b| is_path_byte(*b)) {
            return Err(self.error_at(at, "expected a blank after the number"));
        }
        // std's float parsing is correctly rounded (serde_json's default is not), so a number
        // printed by Display (shortest round-trip form) parses back to the same value.
        let literal = &self.text[start..at];
        let number = if let Ok(n) = literal.parse::<u64>() {
            Some(serde_json::Number::from(n))
        } else if let Ok(n) = literal.parse::<i64>() {
            Some(serde_json::Number::from(n))
        } else {
            literal
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
        };
        match number {
            Some(n) => {
                self.pos = at;
                Ok(CompValue::Number(n))
            }
            None => Err(self.error_at(start, "the number is out of range")),
        }
    }
}

/// Appends `node`'s operands if it is a chain of the same kind (1 = and, 2 = or), else `node`.
fn push_operands(node: Node, kind: u8, out: &mut Vec<Node>) {
    if node.filter.kind() != kind {
        out.push(node);
        return;
    }
    // Rebuild nodes for the chain's operands; their heights are recomputed (bounded by
    // MAX_FILTER_DEPTH, as the whole tree is).
    let mut stack = vec![node.filter];
    let mut operands = Vec::new();
    while let Some(filter) = stack.pop() {
        match filter {
            Filter::And(a, b) if kind == 1 => {
                stack.push(*b);
                stack.push(*a);
            }
            Filter::Or(a, b) if kind == 2 => {
                stack.push(*b);
                stack.push(*a);
            }
            other => operands.push(other),
        }
    }
    out.extend(operands.into_iter().map(|filter| Node {
        height: filter.height(),
        filter,
    }));
}

/// Characters of attribute paths: ATTRNAME characters, `:` and `.` of URIs, `$` of `$ref`.
fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.' | b'$')
}

/// `ATTRNAME = ALPHA *(nameChar)` (RFC 7643 §2.1), plus `$ref`.
fn check_attr_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = name.eq_ignore_ascii_case("$ref")
        || (chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
    if ok {
        Ok(())
    } else if name.is_empty() {
        Err("expected an attribute name".to_string())
    } else {
        Err(format!(
            "{name:?} is not an attribute name (a letter, then letters, digits, \"_\" or \"-\")"
        ))
    }
}

/// Operator/value combinations RFC 7644 §3.4.2.2 rules out.
fn check_operand(op: CompareOp, value: &CompValue) -> Result<(), String> {
    match value {
        CompValue::Null if op != CompareOp::Eq && op != CompareOp::Ne => {
            Err(format!("\"{op}\" cannot compare with null"))
        }
        CompValue::Bool(_) if op.is_ordering() || op.is_substring() => {
            Err(format!("\"{op}\" cannot compare with a boolean"))
        }
        CompValue::Number(_) if op.is_substring() => Err(format!("\"{op}\" needs a string value")),
        _ => Ok(()),
    }
}
