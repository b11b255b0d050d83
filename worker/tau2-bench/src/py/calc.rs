//! `calculate(expression)`, the tool airline and retail share: the official
//! tool accepts only the characters `0123456789+-*/(). `, then runs Python's `eval` on the text and returns
//! `str(round(float(result), 2))`. Those characters still reach more of
//! Python than arithmetic: exact big integers, `**` and `//`, `...`, the
//! empty tuple `()`, calls such as `2(3)`, and CPython's syntax errors. This
//! module reproduces that subset, error texts included.

use std::collections::HashMap;
use std::rc::Rc;

use serde_json::Value;

use super::bigint::BigInt;
use crate::env::{PyErr, PyResult};
use crate::py;

const ALLOWED: &str = "0123456789+-*/(). ";

/// CPython's tokenizer refuses deeper parenthesis nesting.
const MAX_PAREN_LEVEL: u32 = 200;
/// The deepest expression CPython's compiler accepts (called as a tool,
/// the interpreter's own frames use part of its recursion budget).
const MAX_DEPTH: u32 = 2982;
/// CPython's parser stack: a run of 5975 unary signs still parses at top
/// level; parentheses and calls nest the parser deeper.
const MAX_PARSER_LEVEL: u32 = 5975;
const GROUP_LEVELS: u32 = 28;
const CALL_LEVELS: u32 = 24;
const POW_LEVELS: u32 = 2;
/// Products this large are refused rather than computed (Python would go
/// on, only to fail at `float()`).
const MAX_PRODUCT_BITS: u64 = 1 << 20;
/// `sys.int_info.default_max_str_digits`.
const MAX_INT_DIGITS: usize = 4300;

pub fn calculate(expression: &Value) -> PyResult<String> {
    check_characters(expression)?;
    let Value::String(text) = expression else {
        return Err(PyErr::type_error(
            "eval() arg 1 must be a string, bytes or code object",
        ));
    };
    if text.len() <= SMALL_STACK_LEN {
        return evaluate(text);
    }
    // Long input can nest thousands deep: recurse on a roomy stack.
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn_scoped(scope, || evaluate(text))
            .map_err(|e| PyErr::new("MemoryError", e.to_string()))?
            .join()
            .unwrap_or_else(|_| Err(PyErr::new("MemoryError", "")))
    })
}

/// Expressions up to this length nest too little to strain the stack.
const SMALL_STACK_LEN: usize = 400;

fn evaluate(text: &str) -> PyResult<String> {
    let tree = parse(text)?;
    let result = eval(&tree)?;
    Ok(float_str(round2(result.to_float()?)))
}

/// `all(char in ALLOWED for char in expression)`, iterating as Python does:
/// a list or dict yields items or keys, which are tested as substrings.
fn check_characters(expression: &Value) -> PyResult<()> {
    let invalid = || PyErr::value("Invalid characters in expression");
    let substring = |item: &Value| match item {
        Value::String(s) if ALLOWED.contains(s.as_str()) => Ok(()),
        Value::String(_) => Err(invalid()),
        other => Err(PyErr::type_error(format!(
            "'in <string>' requires string as left operand, not {}",
            py::type_name(other)
        ))),
    };
    match expression {
        Value::String(s) if s.chars().all(|c| ALLOWED.contains(c)) => Ok(()),
        Value::String(_) => Err(invalid()),
        Value::Array(items) => items.iter().try_for_each(substring),
        Value::Object(map) => map
            .keys()
            .try_for_each(|k| substring(&Value::String(k.clone()))),
        other => Err(PyErr::type_error(format!(
            "'{}' object is not iterable",
            py::type_name(other)
        ))),
    }
}

/// `str(float)`.
fn float_str(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        py::json::float_repr(f)
    }
}

/// `round(f, 2)`: correctly rounded, ties to even (as Rust's formatting).
pub fn round2(f: f64) -> f64 {
    if !f.is_finite() {
        return f;
    }
    format!("{f:.2}").parse().unwrap_or(f)
}

// ---------------------------------------------------------------- tokens

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    /// A number literal: its byte span and whether it is a float.
    Num(usize, usize, bool),
    Plus,
    Minus,
    Star,
    DoubleStar,
    Slash,
    DoubleSlash,
    LPar,
    RPar,
    Dot,
    Ellipsis,
    End,
}

/// A `SyntaxError` (or the compiler's `RecursionError`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Syntax {
    Empty,
    Invalid,
    NeverClosed,
    Unmatched,
    LeadingZeros,
    TooManyParens,
    Starred,
    DoubleStarred,
    Comma,
    Digits(usize),
    TooDeep,
    /// The parser's own stack overflowed (a `MemoryError` without message).
    ParserStack,
}

impl Syntax {
    /// Raised by the tokenizer: these win over the parser's messages.
    fn is_tokenizer_error(self) -> bool {
        matches!(
            self,
            Syntax::NeverClosed | Syntax::Unmatched | Syntax::LeadingZeros | Syntax::TooManyParens
        )
    }

    fn into_err(self) -> PyErr {
        let message = match self {
            Syntax::Empty => return PyErr::new("SyntaxError", "invalid syntax (<string>, line 0)"),
            Syntax::ParserStack => return PyErr::new("MemoryError", ""),
            Syntax::TooDeep => {
                return PyErr::new(
                    "RecursionError",
                    "maximum recursion depth exceeded during compilation",
                );
            }
            Syntax::Invalid => "invalid syntax".to_string(),
            Syntax::NeverClosed => "'(' was never closed".into(),
            Syntax::Unmatched => "unmatched ')'".into(),
            Syntax::LeadingZeros => "leading zeros in decimal integer literals are not permitted; use an 0o prefix for octal integers".into(),
            Syntax::TooManyParens => "too many nested parentheses".into(),
            Syntax::Starred => "cannot use starred expression here".into(),
            Syntax::DoubleStarred => "cannot use double starred expression here".into(),
            Syntax::Comma => "invalid syntax. Perhaps you forgot a comma?".into(),
            Syntax::Digits(n) => format!(
                "Exceeds the limit ({MAX_INT_DIGITS} digits) for integer string conversion: value has {n} digits; use sys.set_int_max_str_digits() to increase the limit - Consider hexadecimal for huge integer literals to avoid decimal conversion limits."
            ),
        };
        PyErr::new("SyntaxError", format!("{message} (<string>, line 1)"))
    }
}

/// CPython's tokenizer, run lazily: a token is produced when the parser
/// first looks at it, so which error surfaces depends on how far it looked.
struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    level: u32,
    /// Each token with the nesting level after it.
    tokens: Vec<(Tok, u32)>,
    failed: Option<Syntax>,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Self {
            src: src.as_bytes(),
            pos: 0,
            level: 0,
            tokens: Vec::new(),
            failed: None,
        }
    }

    fn get(&mut self, i: usize) -> Result<(Tok, u32), Syntax> {
        while self.tokens.len() <= i {
            if let Some(e) = self.failed {
                return Err(e);
            }
            if let Some(&(Tok::End, level)) = self.tokens.last() {
                return end_token(level);
            }
            match self.next_token() {
                Ok(tok) => self.tokens.push((tok, self.level)),
                Err(e) => {
                    self.failed = Some(e);
                    return Err(e);
                }
            }
        }
        match self.tokens[i] {
            (Tok::End, level) => end_token(level),
            token => Ok(token),
        }
    }

    fn level_of(&self, i: usize) -> u32 {
        self.tokens.get(i).map_or(0, |t| t.1)
    }

    /// The error the rest of the source holds, as CPython looks for one
    /// after a parser error (an unclosed parenthesis does not count here).
    fn error_in_rest(&mut self) -> Option<Syntax> {
        if self.failed.is_some() {
            return self.failed;
        }
        loop {
            match self.next_token() {
                Ok(Tok::End) => return None,
                Ok(_) => {}
                Err(e) => return Some(e),
            }
        }
    }

    fn peek_byte(&self, offset: usize) -> Option<u8> {
        self.src.get(self.pos + offset).copied()
    }

    fn next_token(&mut self) -> Result<Tok, Syntax> {
        while self.peek_byte(0) == Some(b' ') {
            self.pos += 1;
        }
        let Some(c) = self.peek_byte(0) else {
            return Ok(Tok::End);
        };
        let (tok, len) = match c {
            b'0'..=b'9' => return self.number(),
            b'.' if self.peek_byte(1).is_some_and(|b| b.is_ascii_digit()) => {
                return self.number();
            }
            b'.' if self.peek_byte(1) == Some(b'.') && self.peek_byte(2) == Some(b'.') => {
                (Tok::Ellipsis, 3)
            }
            b'.' => (Tok::Dot, 1),
            b'(' => {
                if self.level >= MAX_PAREN_LEVEL {
                    return Err(Syntax::TooManyParens);
                }
                self.level += 1;
                (Tok::LPar, 1)
            }
            b')' => {
                if self.level == 0 {
                    return Err(Syntax::Unmatched);
                }
                self.level -= 1;
                (Tok::RPar, 1)
            }
            b'+' => (Tok::Plus, 1),
            b'-' => (Tok::Minus, 1),
            b'*' if self.peek_byte(1) == Some(b'*') => (Tok::DoubleStar, 2),
            b'*' => (Tok::Star, 1),
            b'/' if self.peek_byte(1) == Some(b'/') => (Tok::DoubleSlash, 2),
            b'/' => (Tok::Slash, 1),
            _ => return Err(Syntax::Invalid),
        };
        self.pos += len;
        Ok(tok)
    }

    fn skip_digits(&mut self) -> bool {
        let start = self.pos;
        while self.peek_byte(0).is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        self.pos > start
    }

    /// A decimal literal. `0` may repeat but not lead other digits,
    /// unless a fraction follows (`007.5` is a float, `007` an error).
    fn number(&mut self) -> Result<Tok, Syntax> {
        let start = self.pos;
        let mut is_float = false;
        if self.peek_byte(0) == Some(b'0') {
            while self.peek_byte(0) == Some(b'0') {
                self.pos += 1;
            }
            let nonzero = self.skip_digits();
            if self.peek_byte(0) == Some(b'.') {
                self.pos += 1;
                self.skip_digits();
                is_float = true;
            } else if nonzero {
                return Err(Syntax::LeadingZeros);
            }
        } else {
            self.skip_digits();
            if self.peek_byte(0) == Some(b'.') {
                self.pos += 1;
                self.skip_digits();
                is_float = true;
            }
        }
        Ok(Tok::Num(start, self.pos, is_float))
    }
}

fn end_token(level: u32) -> Result<(Tok, u32), Syntax> {
    if level > 0 {
        Err(Syntax::NeverClosed)
    } else {
        Ok((Tok::End, 0))
    }
}

// ---------------------------------------------------------------- parser

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Pow,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::Div => "/",
            Op::FloorDiv => "//",
            Op::Pow => "** or pow()",
        }
    }
}

#[derive(Debug)]
enum Node {
    Int(BigInt),
    Float(f64),
    Ellipsis,
    Tuple,
    Neg(Rc<Node>),
    Pos(Rc<Node>),
    Bin(Op, Rc<Node>, Rc<Node>),
    Call(Rc<Node>, Arg),
    /// Stands in for a subtree nested deeper than the compiler allows.
    TooDeep,
}

#[derive(Debug)]
enum Arg {
    None,
    Plain(Rc<Node>),
    Star(Rc<Node>),
    DoubleStar(Rc<Node>),
}

/// A parsed expression and its nesting depth (as the compiler counts it).
#[derive(Clone, Debug)]
struct Expr {
    node: Rc<Node>,
    depth: u32,
}

impl Expr {
    fn leaf(node: Node) -> Self {
        Self {
            node: Rc::new(node),
            depth: 1,
        }
    }

    /// A node over children; past the compiler's limit only the depth is kept.
    fn over(depth: u32, build: impl FnOnce() -> Node) -> Self {
        let node = if depth > MAX_DEPTH {
            Node::TooDeep
        } else {
            build()
        };
        Self {
            node: Rc::new(node),
            depth: depth.min(MAX_DEPTH + 1),
        }
    }

    fn unary(self, negative: bool) -> Self {
        Self::over(self.depth + 1, || {
            if negative {
                Node::Neg(self.node)
            } else {
                Node::Pos(self.node)
            }
        })
    }

    fn binary(op: Op, left: Self, right: Self) -> Self {
        Self::over(left.depth.max(right.depth) + 1, || {
            Node::Bin(op, left.node, right.node)
        })
    }
}

/// A parse result: the expression and the index of the token after it.
type Parsed = Option<(Expr, usize)>;
type PResult = Result<Parsed, Syntax>;

/// Parses like CPython's PEG parser: a first pass, and on failure a second
/// pass with the `invalid_*` rules that produce the specific messages.
fn parse(text: &str) -> PyResult<Rc<Node>> {
    let source = text.trim_start_matches(' ');
    if source.is_empty() {
        return Err(Syntax::Empty.into_err());
    }
    let mut parser = Parser {
        lex: Lexer::new(source),
        invalid_rules: false,
        memo: HashMap::new(),
        level: 0,
    };
    match parser.eval_input() {
        Ok(Some(expr)) if expr.depth > MAX_DEPTH => return Err(Syntax::TooDeep.into_err()),
        Ok(Some(expr)) => return Ok(expr.node),
        Err(e @ Syntax::Digits(_)) => {
            return Err(parser.lex.error_in_rest().unwrap_or(e).into_err());
        }
        Err(e) => return Err(e.into_err()),
        Ok(None) => {}
    }
    parser.invalid_rules = true;
    parser.memo.clear();
    let error = match parser.eval_input() {
        Err(e) => e,
        Ok(_) => Syntax::Invalid,
    };
    if error.is_tokenizer_error() || error == Syntax::ParserStack {
        return Err(error.into_err());
    }
    // A tokenizer error anywhere in the source replaces the parser's message.
    Err(parser.lex.error_in_rest().unwrap_or(error).into_err())
}

/// The rules whose results are memoized (CPython memoizes them per token
/// position, whichever pass flag computed them).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Rule {
    Expression,
    Sum,
    Term,
    Factor,
    Primary,
}

struct Parser<'a> {
    lex: Lexer<'a>,
    /// The second pass: try the rules that raise specific messages.
    invalid_rules: bool,
    memo: HashMap<(Rule, usize), PResult>,
    /// Approximately CPython's parser recursion level.
    level: u32,
}

impl Parser<'_> {
    fn tok(&mut self, i: usize) -> Result<Tok, Syntax> {
        Ok(self.lex.get(i)?.0)
    }

    fn memoized(&mut self, rule: Rule, p: usize, f: fn(&mut Self, usize) -> PResult) -> PResult {
        if let Some(done) = self.memo.get(&(rule, p)) {
            return done.clone();
        }
        let result = f(self, p);
        self.memo.insert((rule, p), result.clone());
        result
    }

    /// Runs `f` `cost` parser levels deeper.
    fn nested<T>(
        &mut self,
        cost: u32,
        f: impl FnOnce(&mut Self) -> Result<T, Syntax>,
    ) -> Result<T, Syntax> {
        self.level += cost;
        let result = if self.level > MAX_PARSER_LEVEL {
            Err(Syntax::ParserStack)
        } else {
            f(self)
        };
        self.level -= cost;
        result
    }

    /// `eval: expressions NEWLINE* ENDMARKER`.
    fn eval_input(&mut self) -> Result<Option<Expr>, Syntax> {
        let Some((expr, end)) = self.expression(0)? else {
            return Ok(None);
        };
        Ok((self.tok(end)? == Tok::End).then_some(expr))
    }

    fn expression(&mut self, p: usize) -> PResult {
        self.memoized(Rule::Expression, p, Self::expression_inner)
    }

    fn expression_inner(&mut self, p: usize) -> PResult {
        if self.invalid_rules {
            self.invalid_expression(p)?;
        }
        let parsed = self.sum(p)?;
        if let Some((_, end)) = &parsed {
            self.tok(*end)?; // `'if'` of a conditional expression
        }
        Ok(parsed)
    }

    /// `a=disjunction b=expression_without_invalid`: two expressions in a
    /// row inside brackets suggest a missing comma.
    fn invalid_expression(&mut self, p: usize) -> Result<(), Syntax> {
        let Some((_, a_end)) = self.sum(p)? else {
            return Ok(());
        };
        self.invalid_rules = false;
        let b = self.expression(a_end);
        self.invalid_rules = true;
        if let Some((_, b_end)) = b?
            && self.lex.level_of(b_end - 1) != 0
        {
            return Err(Syntax::Comma);
        }
        self.tok(a_end)?;
        Ok(())
    }

    /// `sum: sum ('+'|'-') term | term` (the rules above it only look at
    /// the token after it).
    fn sum(&mut self, p: usize) -> PResult {
        self.memoized(Rule::Sum, p, |s, p| {
            s.binary_chain(p, Self::term, |t| match t {
                Tok::Plus => Some(Op::Add),
                Tok::Minus => Some(Op::Sub),
                _ => None,
            })
        })
    }

    fn term(&mut self, p: usize) -> PResult {
        self.memoized(Rule::Term, p, |s, p| {
            s.binary_chain(p, Self::factor, |t| match t {
                Tok::Star => Some(Op::Mul),
                Tok::Slash => Some(Op::Div),
                Tok::DoubleSlash => Some(Op::FloorDiv),
                _ => None,
            })
        })
    }

    fn binary_chain(
        &mut self,
        p: usize,
        operand: fn(&mut Self, usize) -> PResult,
        op_of: fn(Tok) -> Option<Op>,
    ) -> PResult {
        let Some((mut left, mut at)) = operand(self, p)? else {
            return Ok(None);
        };
        while let Some(op) = op_of(self.tok(at)?) {
            let Some((right, end)) = operand(self, at + 1)? else {
                break;
            };
            left = Expr::binary(op, left, right);
            at = end;
        }
        Ok(Some((left, at)))
    }

    /// `factor: '+' factor | '-' factor | power`, a run of signs at once.
    fn factor(&mut self, p: usize) -> PResult {
        self.memoized(Rule::Factor, p, |s, p| {
            let mut signs = Vec::new();
            loop {
                match s.tok(p + signs.len())? {
                    Tok::Plus => signs.push(false),
                    Tok::Minus => signs.push(true),
                    _ => break,
                }
            }
            let cost = signs.len() as u32;
            let Some((mut expr, end)) = s.nested(cost, |s| s.power(p + signs.len()))? else {
                return Ok(None);
            };
            for negative in signs.into_iter().rev() {
                expr = expr.unary(negative);
            }
            Ok(Some((expr, end)))
        })
    }

    /// `power: primary '**' factor | primary`.
    fn power(&mut self, p: usize) -> PResult {
        let Some((base, at)) = self.primary(p)? else {
            return Ok(None);
        };
        if self.tok(at)? == Tok::DoubleStar
            && let Some((exponent, end)) = self.nested(POW_LEVELS, |s| s.factor(at + 1))?
        {
            return Ok(Some((Expr::binary(Op::Pow, base, exponent), end)));
        }
        Ok(Some((base, at)))
    }

    /// `primary: primary '.' NAME | primary '(' [arguments] ')' | atom`.
    fn primary(&mut self, p: usize) -> PResult {
        self.memoized(Rule::Primary, p, |s, p| {
            let Some((mut expr, mut at)) = s.atom(p)? else {
                return Ok(None);
            };
            loop {
                match s.tok(at)? {
                    Tok::Dot => {
                        s.tok(at + 1)?; // no NAME can follow
                        break;
                    }
                    Tok::LPar => {
                        let Some((arg, end)) =
                            s.nested(CALL_LEVELS, |s| s.call_arguments(at + 1))?
                        else {
                            break;
                        };
                        expr = Expr::over(expr.depth + 1, || Node::Call(expr.node, arg));
                        at = end;
                    }
                    _ => break,
                }
            }
            Ok(Some((expr, at)))
        })
    }

    /// After a call's `(`: `[arguments] ')'`; returns the index after `)`.
    fn call_arguments(&mut self, p: usize) -> Result<Option<(Arg, usize)>, Syntax> {
        if let Some((arg, close)) = self.arguments(p)? {
            return Ok(Some((arg, close + 1)));
        }
        Ok((self.tok(p)? == Tok::RPar).then_some((Arg::None, p + 1)))
    }

    /// One argument (no commas exist): `*e`, `**e` or `e`, then `)`.
    fn arguments(&mut self, p: usize) -> Result<Option<(Arg, usize)>, Syntax> {
        let first = self.tok(p)?;
        let parsed = match first {
            Tok::Star | Tok::DoubleStar => self.expression(p + 1)?,
            _ => self.expression(p)?,
        };
        let Some((expr, end)) = parsed else {
            return Ok(None);
        };
        if self.tok(end)? != Tok::RPar {
            return Ok(None);
        }
        let arg = match first {
            Tok::Star => Arg::Star(expr.node),
            Tok::DoubleStar => Arg::DoubleStar(expr.node),
            _ => Arg::Plain(expr.node),
        };
        Ok(Some((arg, end)))
    }

    fn atom(&mut self, p: usize) -> PResult {
        let node = match self.tok(p)? {
            Tok::Num(start, end, is_float) => self.number(start, end, is_float)?,
            Tok::Ellipsis => Node::Ellipsis,
            Tok::LPar => return self.nested(GROUP_LEVELS, |s| s.parenthesized(p)),
            _ => return Ok(None),
        };
        Ok(Some((Expr::leaf(node), p + 1)))
    }

    fn number(&self, start: usize, end: usize, is_float: bool) -> Result<Node, Syntax> {
        let text =
            std::str::from_utf8(self.lex.src.get(start..end).unwrap_or_default()).unwrap_or("0");
        if is_float {
            return Ok(Node::Float(text.parse().unwrap_or(f64::NAN)));
        }
        if text.len() > MAX_INT_DIGITS {
            return Err(Syntax::Digits(text.len()));
        }
        Ok(Node::Int(BigInt::parse(text)))
    }

    /// `(`: the empty tuple, a group, or in the second pass `(*e)` / `(**e)`.
    fn parenthesized(&mut self, p: usize) -> PResult {
        let inner = self.tok(p + 1)?;
        // tuple: '(' [star_named_expression ',' ...] ')'
        let element = if inner == Tok::Star {
            self.sum(p + 2)?
        } else {
            self.expression(p + 1)?
        };
        if let Some((_, end)) = element {
            self.tok(end)?; // the ',' a tuple would need
        }
        if inner == Tok::RPar {
            return Ok(Some((Expr::leaf(Node::Tuple), p + 2)));
        }
        // group: '(' named_expression ')'
        if let Some((expr, end)) = self.expression(p + 1)?
            && self.tok(end)? == Tok::RPar
        {
            return Ok(Some((expr, end + 1)));
        }
        // invalid_group: '(' starred_expression ')' | '(' '**' expression ')'
        if self.invalid_rules
            && matches!(inner, Tok::Star | Tok::DoubleStar)
            && let Some((_, end)) = self.expression(p + 2)?
            && self.tok(end)? == Tok::RPar
        {
            return Err(if inner == Tok::Star {
                Syntax::Starred
            } else {
                Syntax::DoubleStarred
            });
        }
        Ok(None)
    }
}

// ---------------------------------------------------------------- values

/// The Python objects such an expression can produce.
#[derive(Clone, Debug)]
enum Obj {
    Int(BigInt),
    Float(f64),
    Complex(f64, f64),
    /// Always the empty tuple: nothing else can build a tuple.
    Tuple,
    Ellipsis,
}

impl Obj {
    fn type_name(&self) -> &'static str {
        match self {
            Obj::Int(_) => "int",
            Obj::Float(_) => "float",
            Obj::Complex(..) => "complex",
            Obj::Tuple => "tuple",
            Obj::Ellipsis => "ellipsis",
        }
    }

    /// `str(obj)`.
    fn text(&self) -> String {
        match self {
            Obj::Int(i) => i.to_string(),
            Obj::Float(f) => float_str(*f),
            Obj::Complex(re, im) => complex_repr(*re, *im),
            Obj::Tuple => "()".into(),
            Obj::Ellipsis => "Ellipsis".into(),
        }
    }

    /// `float(obj)`.
    fn to_float(&self) -> PyResult<f64> {
        match self {
            Obj::Int(i) => int_to_float(i),
            Obj::Float(f) => Ok(*f),
            other => Err(PyErr::type_error(format!(
                "float() argument must be a string or a real number, not '{}'",
                other.type_name()
            ))),
        }
    }

    fn is_number(&self) -> bool {
        matches!(self, Obj::Int(_) | Obj::Float(_) | Obj::Complex(..))
    }

    /// As a complex number (numbers only).
    fn to_complex(&self) -> PyResult<(f64, f64)> {
        match self {
            Obj::Complex(re, im) => Ok((*re, *im)),
            other => Ok((other.to_float()?, 0.0)),
        }
    }
}

fn complex_repr(re: f64, im: f64) -> String {
    let part = |f: f64| {
        let s = float_str(f);
        s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
    };
    if re == 0.0 && re.is_sign_positive() {
        format!("{}j", part(im))
    } else {
        let sign = if im < 0.0 || (im == 0.0 && im.is_sign_negative()) {
            ""
        } else {
            "+"
        };
        format!("({}{sign}{}j)", part(re), part(im))
    }
}

fn int_to_float(i: &BigInt) -> PyResult<f64> {
    i.to_f64()
        .ok_or_else(|| PyErr::new("OverflowError", "int too large to convert to float"))
}

fn zero_division(message: &str) -> PyErr {
    PyErr::new("ZeroDivisionError", message)
}

fn eval(node: &Node) -> PyResult<Obj> {
    match node {
        Node::Int(i) => Ok(Obj::Int(i.clone())),
        Node::Float(f) => Ok(Obj::Float(*f)),
        Node::Ellipsis => Ok(Obj::Ellipsis),
        Node::Tuple => Ok(Obj::Tuple),
        Node::Neg(inner) => unary(eval(inner)?, "-"),
        Node::Pos(inner) => unary(eval(inner)?, "+"),
        Node::Bin(op, left, right) => {
            let left = eval(left)?;
            let right = eval(right)?;
            binary(*op, left, right)
        }
        Node::Call(callee, arg) => call(eval(callee)?, arg),
        Node::TooDeep => Err(Syntax::TooDeep.into_err()),
    }
}

fn unary(value: Obj, op: &str) -> PyResult<Obj> {
    let negate = op == "-";
    match value {
        Obj::Int(i) if negate => Ok(Obj::Int(i.neg())),
        Obj::Float(f) if negate => Ok(Obj::Float(-f)),
        Obj::Complex(re, im) if negate => Ok(Obj::Complex(-re, -im)),
        v @ (Obj::Int(_) | Obj::Float(_) | Obj::Complex(..)) => Ok(v),
        other => Err(PyErr::type_error(format!(
            "bad operand type for unary {op}: '{}'",
            other.type_name()
        ))),
    }
}

/// Nothing here is callable; arguments are evaluated (and unpacked) first.
fn call(callee: Obj, arg: &Arg) -> PyResult<Obj> {
    match arg {
        Arg::None => {}
        Arg::Plain(e) => {
            eval(e)?;
        }
        Arg::Star(e) => {
            let value = eval(e)?;
            if !matches!(value, Obj::Tuple) {
                return Err(PyErr::type_error(format!(
                    "{} argument after * must be an iterable, not {}",
                    callee.text(),
                    value.type_name()
                )));
            }
        }
        Arg::DoubleStar(e) => {
            let value = eval(e)?;
            return Err(PyErr::type_error(format!(
                "{} argument after ** must be a mapping, not {}",
                callee.text(),
                value.type_name()
            )));
        }
    }
    Err(PyErr::type_error(format!(
        "'{}' object is not callable",
        callee.type_name()
    )))
}

fn unsupported(op: Op, left: &Obj, right: &Obj) -> PyErr {
    PyErr::type_error(format!(
        "unsupported operand type(s) for {}: '{}' and '{}'",
        op.symbol(),
        left.type_name(),
        right.type_name()
    ))
}

fn binary(op: Op, left: Obj, right: Obj) -> PyResult<Obj> {
    match (&left, &right) {
        (Obj::Int(a), Obj::Int(b)) => int_op(op, a, b),
        (Obj::Complex(..), _) | (_, Obj::Complex(..)) if left.is_number() && right.is_number() => {
            complex_op(op, &left, &right)
        }
        _ if left.is_number() && right.is_number() => {
            float_op(op, left.to_float()?, right.to_float()?)
        }
        _ => sequence_op(op, &left, &right),
    }
}

fn int_op(op: Op, a: &BigInt, b: &BigInt) -> PyResult<Obj> {
    Ok(Obj::Int(match op {
        Op::Add => a.add(b),
        Op::Sub => a.sub(b),
        Op::Mul if a.bits() + b.bits() > MAX_PRODUCT_BITS => {
            return Err(PyErr::new(
                "OverflowError",
                "int too large to convert to float",
            ));
        }
        Op::Mul => a.mul(b),
        Op::Div => {
            return match a.true_div(b) {
                Ok(f) => Ok(Obj::Float(f)),
                Err(true) => Err(zero_division("division by zero")),
                Err(false) => Err(PyErr::new(
                    "OverflowError",
                    "integer division result too large for a float",
                )),
            };
        }
        Op::FloorDiv => a
            .div_floor(b)
            .ok_or_else(|| zero_division("integer division or modulo by zero"))?,
        Op::Pow if b.is_negative() => return float_pow(int_to_float(a)?, int_to_float(b)?),
        Op::Pow => a
            .pow(b)
            .map_err(|_| PyErr::new("OverflowError", "int too large to convert to float"))?,
    }))
}

fn float_op(op: Op, a: f64, b: f64) -> PyResult<Obj> {
    Ok(Obj::Float(match op {
        Op::Add => a + b,
        Op::Sub => a - b,
        Op::Mul => a * b,
        Op::Div if b == 0.0 => return Err(zero_division("float division by zero")),
        Op::Div => a / b,
        Op::FloorDiv if b == 0.0 => return Err(zero_division("float floor division by zero")),
        Op::FloorDiv => float_floor_div(a, b),
        Op::Pow => return float_pow(a, b),
    }))
}

/// CPython's `float.__floordiv__` (via `divmod`).
fn float_floor_div(vx: f64, wx: f64) -> f64 {
    let modulo = vx % wx;
    let mut div = (vx - modulo) / wx;
    if modulo != 0.0 && ((wx < 0.0) != (modulo < 0.0)) {
        div -= 1.0;
    }
    if div != 0.0 {
        let mut floordiv = div.floor();
        if div - floordiv > 0.5 {
            floordiv += 1.0;
        }
        floordiv
    } else {
        0.0f64.copysign(vx / wx)
    }
}

fn is_odd_integer(x: f64) -> bool {
    (x.abs() % 2.0) == 1.0
}

/// CPython's `float.__pow__`, special cases and errors included.
fn float_pow(iv: f64, iw: f64) -> PyResult<Obj> {
    let float = |f: f64| Ok(Obj::Float(f));
    if iw == 0.0 {
        return float(1.0);
    }
    if iv.is_nan() {
        return float(iv);
    }
    if iw.is_nan() {
        return float(if iv == 1.0 { 1.0 } else { iw });
    }
    if iw.is_infinite() {
        let iv = iv.abs();
        return float(if iv == 1.0 {
            1.0
        } else if (iw > 0.0) == (iv > 1.0) {
            iw.abs()
        } else {
            0.0
        });
    }
    if iv.is_infinite() {
        let odd = is_odd_integer(iw);
        return float(if iw > 0.0 {
            if odd { iv } else { iv.abs() }
        } else if odd {
            0.0f64.copysign(iv)
        } else {
            0.0
        });
    }
    if iv == 0.0 {
        if iw < 0.0 {
            return Err(zero_division("0.0 cannot be raised to a negative power"));
        }
        return float(if is_odd_integer(iw) { iv } else { 0.0 });
    }
    let mut negate = false;
    let mut base = iv;
    if iv < 0.0 {
        if iw != iw.floor() {
            // Negative numbers raised to fractional powers become complex.
            return complex_pow((iv, 0.0), (iw, 0.0));
        }
        base = -iv;
        negate = is_odd_integer(iw);
    }
    if base == 1.0 {
        return float(if negate { -1.0 } else { 1.0 });
    }
    let result = base.powf(iw);
    if result.is_infinite() {
        return Err(PyErr::new(
            "OverflowError",
            "(34, 'Numerical result out of range')",
        ));
    }
    float(if negate { -result } else { result })
}

/// Complex arithmetic, approximately: a complex result can only end in
/// `float()`'s TypeError, so only the errors on the way must match.
fn complex_op(op: Op, left: &Obj, right: &Obj) -> PyResult<Obj> {
    let (a, b) = left.to_complex()?;
    let (c, d) = right.to_complex()?;
    let (re, im) = match op {
        Op::Add => (a + c, b + d),
        Op::Sub => (a - c, b - d),
        Op::Mul => (a * c - b * d, a * d + b * c),
        Op::Div if c == 0.0 && d == 0.0 => return Err(zero_division("complex division by zero")),
        Op::Div => {
            let n = c * c + d * d;
            ((a * c + b * d) / n, (b * c - a * d) / n)
        }
        Op::FloorDiv => return Err(unsupported(op, left, right)),
        Op::Pow => return complex_pow((a, b), (c, d)),
    };
    Ok(Obj::Complex(re, im))
}

fn complex_pow(base: (f64, f64), exp: (f64, f64)) -> PyResult<Obj> {
    if exp == (0.0, 0.0) {
        return Ok(Obj::Complex(1.0, 0.0));
    }
    if base == (0.0, 0.0) {
        if exp.1 != 0.0 || exp.0 < 0.0 {
            return Err(zero_division("0.0 to a negative or complex power"));
        }
        return Ok(Obj::Complex(0.0, 0.0));
    }
    let r = base.0.hypot(base.1);
    let theta = base.1.atan2(base.0);
    let len = r.powf(exp.0) * (-exp.1 * theta).exp();
    let phase = theta * exp.0 + exp.1 * r.ln();
    let (re, im) = (len * phase.cos(), len * phase.sin());
    if !re.is_finite() || !im.is_finite() {
        return Err(PyErr::new("OverflowError", "complex exponentiation"));
    }
    Ok(Obj::Complex(re, im))
}

/// Operators on the empty tuple and `...`.
fn sequence_op(op: Op, left: &Obj, right: &Obj) -> PyResult<Obj> {
    match (op, left, right) {
        (Op::Add, Obj::Tuple, Obj::Tuple) => Ok(Obj::Tuple),
        (Op::Add, Obj::Tuple, other) => Err(PyErr::type_error(format!(
            "can only concatenate tuple (not \"{}\") to tuple",
            other.type_name()
        ))),
        (Op::Mul, Obj::Tuple, count) | (Op::Mul, count, Obj::Tuple) => repeat(count),
        _ => Err(unsupported(op, left, right)),
    }
}

/// `() * n`.
fn repeat(count: &Obj) -> PyResult<Obj> {
    match count {
        Obj::Int(n) if n.to_i64().is_some() => Ok(Obj::Tuple),
        Obj::Int(_) => Err(PyErr::new(
            "OverflowError",
            "cannot fit 'int' into an index-sized integer",
        )),
        other => Err(PyErr::type_error(format!(
            "can't multiply sequence by non-int of type '{}'",
            other.type_name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn calc(s: &str) -> String {
        match calculate(&json!(s)) {
            Ok(v) => v,
            Err(e) => format!("{}: {}", e.kind, e.message),
        }
    }

    #[test]
    fn arithmetic_matches_python() {
        assert_eq!(calc("2 + 2"), "4.0");
        assert_eq!(calc("100/3"), "33.33");
        assert_eq!(calc("2.675"), "2.67");
        assert_eq!(calc("-7//2"), "-4.0");
        assert_eq!(calc("2**-2**-1"), "0.71");
        assert_eq!(calc("2**1000"), "1.0715086071862673e+301");
        assert_eq!(calc("-0.004"), "-0.0");
    }

    #[test]
    fn errors_match_python() {
        assert_eq!(calc("1/0"), "ZeroDivisionError: division by zero");
        assert_eq!(calc(""), "SyntaxError: invalid syntax (<string>, line 0)");
        assert_eq!(
            calc("(1 2)"),
            "SyntaxError: invalid syntax. Perhaps you forgot a comma? (<string>, line 1)"
        );
        assert_eq!(
            calc("1 2 ("),
            "SyntaxError: '(' was never closed (<string>, line 1)"
        );
        assert_eq!(
            calc("(1+) )"),
            "SyntaxError: unmatched ')' (<string>, line 1)"
        );
        assert_eq!(
            calc("(*1)"),
            "SyntaxError: cannot use starred expression here (<string>, line 1)"
        );
        assert_eq!(
            calc("1(*2)"),
            "TypeError: 1 argument after * must be an iterable, not int"
        );
        assert_eq!(
            calc("()*2"),
            "TypeError: float() argument must be a string or a real number, not 'tuple'"
        );
        assert_eq!(
            calc("(-8)**0.5"),
            "TypeError: float() argument must be a string or a real number, not 'complex'"
        );
        assert_eq!(calc("1e5"), "ValueError: Invalid characters in expression");
    }
}
