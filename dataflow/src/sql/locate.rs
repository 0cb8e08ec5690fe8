//! Positions of keywords in the SQL text, for errors about constructs whose AST node has no
//! span of its own (`TOP`, `FOR UPDATE`, `GROUP BY … WITH ROLLUP`, …) or whose span starts
//! after the construct's keyword (`EXISTS (…)` starts at its subquery, `RIGHT JOIN u` at `u`,
//! `EXCEPT SELECT …` at the right `SELECT`).
//!
//! The text is tokenized with sqlparser's tokenizer (the same positions sqlparser gives), so
//! string literals, quoted identifiers and comments never match a keyword; a word matches
//! only unquoted, case-insensitively.

use sqlparser::dialect::GenericDialect;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

use super::Pos;

/// One token of the text: where it starts and what it is.
struct Tok {
    at: Pos,
    kind: Kind,
}

#[derive(PartialEq)]
enum Kind {
    /// An unquoted word, uppercased.
    Word(String),
    Open,
    Close,
    /// Any other token, as written (`|>`, `,`); an optimizer hint comment is `/*+`.
    Sym(String),
}

impl Tok {
    fn is(&self, word: &str) -> bool {
        match &self.kind {
            Kind::Word(w) => w.eq_ignore_ascii_case(word),
            Kind::Sym(s) => s == word,
            _ => false,
        }
    }
}

/// The tokens of `sql` without whitespace and comments (but with optimizer hints `/*+ … */`).
/// Empty if the text does not tokenize (it then did not parse either).
fn tokens(sql: &str) -> Vec<Tok> {
    let Ok(toks) = Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location() else {
        return Vec::new();
    };
    toks.into_iter()
        .filter_map(|t| {
            let at = Pos::of(t.span.start);
            let kind = match t.token {
                Token::Whitespace(Whitespace::MultiLineComment(c)) if c.starts_with('+') => {
                    Kind::Sym("/*+".into())
                }
                Token::Whitespace(_) | Token::EOF => return None,
                Token::Word(w) if w.quote_style.is_none() => Kind::Word(w.value.to_uppercase()),
                Token::LParen => Kind::Open,
                Token::RParen => Kind::Close,
                other => Kind::Sym(other.to_string()),
            };
            Some(Tok { at, kind })
        })
        .collect()
}

fn key(p: Pos) -> (u64, u64) {
    (p.line, p.column)
}

/// The first occurrence at or after `from` of one of the keyword sequences `seqs` (e.g.
/// `&[&["WITH", "ROLLUP"]]`), at the parenthesis depth of `from`: not inside parentheses
/// opened after `from`, and not past the parenthesis that closes around it. Returns its
/// position and which sequence it is.
pub(super) fn find(sql: &str, from: Pos, seqs: &[&[&str]]) -> Option<(Pos, usize)> {
    let toks = tokens(sql);
    let start = toks.iter().position(|t| key(t.at) >= key(from))?;
    let mut depth = 0usize;
    for i in start..toks.len() {
        if depth == 0 {
            for (n, seq) in seqs.iter().enumerate() {
                let matches = !seq.is_empty()
                    && toks.len() >= i + seq.len()
                    && seq.iter().zip(&toks[i..]).all(|(w, t)| t.is(w));
                if matches {
                    return Some((toks[i].at, n));
                }
            }
        }
        match toks[i].kind {
            Kind::Open => depth += 1,
            Kind::Close if depth == 0 => return None,
            Kind::Close => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The first occurrence of one of `seqs` at or after `from` (see [`find`]), or `from`.
pub(super) fn find_or(sql: &str, from: Pos, seqs: &[&[&str]]) -> Pos {
    find(sql, from, seqs).map_or(from, |(p, _)| p)
}

/// Where the construct whose AST node starts at `at` really starts: the nearest word of
/// `words` at or before `at`, extended back over the words of `words` directly before it
/// (`FULL OUTER JOIN u` at `u` → `FULL`; `NOT EXISTS (SELECT …` at `SELECT` → `NOT`).
/// `at` if no word of `words` comes before it.
pub(super) fn keyword_before(sql: &str, at: Pos, words: &[&str]) -> Pos {
    let toks = tokens(sql);
    let is_word = |t: &Tok| words.iter().any(|w| t.is(w));
    let end = toks.partition_point(|t| key(t.at) <= key(at));
    let Some(mut i) = toks[..end].iter().rposition(is_word) else {
        return at;
    };
    while i > 0 && is_word(&toks[i - 1]) {
        i -= 1;
    }
    toks[i].at
}

/// Where a construct that starts with one of `words` is, from the start of its AST node's
/// span (`None`: the node has none): [`keyword_before`] that start; without a span, the
/// first of `words` at or after `parent` (the position of the enclosing node), else `parent`.
pub(super) fn construct_at(sql: &str, start: Option<Pos>, parent: Pos, words: &[&str]) -> Pos {
    match start {
        Some(at) => keyword_before(sql, at, words),
        None => {
            let seqs: Vec<&[&str]> = words.iter().map(std::slice::from_ref).collect();
            find_or(sql, parent, &seqs)
        }
    }
}

/// The start of a node's span, if it has one.
pub(super) fn span_start(e: &impl sqlparser::ast::Spanned) -> Option<Pos> {
    let s = e.span().start;
    (s.line != 0).then(|| Pos::of(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: u64, column: u64) -> Pos {
        Pos { line, column }
    }

    #[test]
    fn find_skips_literals_comments_quoted_names_and_nested_parentheses() {
        let sql = concat!(
            "SELECT 'with rollup', \"with\" /* WITH ROLLUP */ -- with rollup\n",
            "FROM (SELECT a FROM t GROUP BY a WITH ROLLUP) x GROUP BY a\n",
            "  With  Rollup"
        );
        assert_eq!(
            find(sql, p(1, 1), &[&["WITH", "CUBE"], &["WITH", "ROLLUP"]]),
            Some((p(3, 3), 1))
        );
        // From inside the parentheses: the nested one, and nothing past its `)`.
        assert_eq!(find_or(sql, p(2, 7), &[&["WITH", "ROLLUP"]]), p(2, 34));
        assert_eq!(find(sql, p(2, 7), &[&["WHERE"]]), None);
        assert_eq!(
            find("SELECT /*+ X */ a", p(1, 1), &[&["/*+"]]),
            Some((p(1, 8), 0))
        );
        assert_eq!(find("SELEC 'x", p(1, 1), &[&["X"]]), None);
    }

    #[test]
    fn keyword_before_finds_the_start_of_the_keywords_before_a_construct() {
        let sql = "SELECT a FROM t FULL OUTER JOIN u ON t.a = u.a";
        assert_eq!(
            keyword_before(sql, p(1, 33), &["FULL", "OUTER", "JOIN"]),
            p(1, 17)
        );
        let sql = "SELECT a FROM t WHERE b AND NOT EXISTS (SELECT 1 FROM u)";
        assert_eq!(keyword_before(sql, p(1, 41), &["NOT", "EXISTS"]), p(1, 29));
        assert_eq!(keyword_before(sql, p(1, 8), &["EXISTS"]), p(1, 8));
    }
}
