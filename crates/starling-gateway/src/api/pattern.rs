//! Channel patterns for the server API's `channels` method.
//!
//! Centrifugo matches them with the gobwas/glob library without separators, so `*` (and `**`)
//! match any run of characters, `:` included. Supported syntax:
//!
//! - `*` any run of characters, `?` any one character;
//! - `[abc]`, `[a-z]` one of a set, `[!abc]` one not in it;
//! - `{a,b,c}` one of the alternatives (which may hold patterns themselves, nested too);
//! - `\x` the character `x` literally.
//!
//! Alternatives are expanded up front into plain patterns (at most [`MAX_ALTERNATIVES`]); each
//! plain pattern is matched with the classic greedy star algorithm, so matching costs at most
//! pattern length × name length per alternative, whatever the input.

use std::iter::Peekable;
use std::str::Chars;

/// Most plain patterns a pattern may expand to (`{a,b}{c,d}` expands to 4).
pub(crate) const MAX_ALTERNATIVES: usize = 256;

/// Why a pattern cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PatternError {
    /// A `[` without its `]`.
    #[error("unclosed character class in pattern {pattern:?}")]
    UnclosedClass {
        /// The pattern.
        pattern: String,
    },
    /// A `[]` or `[!]` that can match nothing.
    #[error("empty character class in pattern {pattern:?}")]
    EmptyClass {
        /// The pattern.
        pattern: String,
    },
    /// A `{` without its `}`.
    #[error("unclosed alternatives in pattern {pattern:?}")]
    UnclosedAlternatives {
        /// The pattern.
        pattern: String,
    },
    /// A `\` at the very end.
    #[error("pattern {pattern:?} ends with an escape")]
    DanglingEscape {
        /// The pattern.
        pattern: String,
    },
    /// More alternatives than [`MAX_ALTERNATIVES`].
    #[error("pattern {pattern:?} expands to more than {max} alternatives")]
    TooManyAlternatives {
        /// The pattern.
        pattern: String,
        /// The limit.
        max: usize,
    },
}

/// One step of a plain (alternative-free) pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyOne,
    AnyRun,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    fn matches(&self, c: char) -> bool {
        match self {
            Token::Literal(l) => *l == c,
            Token::AnyOne => true,
            Token::AnyRun => false,
            Token::Class { negated, ranges } => {
                ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
            }
        }
    }
}

/// A compiled channel pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    alternatives: Vec<Vec<Token>>,
}

impl Pattern {
    /// Compiles `pattern`.
    pub(crate) fn compile(pattern: &str) -> Result<Pattern, PatternError> {
        let mut parser = Parser {
            chars: pattern.chars().peekable(),
            pattern,
        };
        let alternatives = parser.sequence(false)?;
        Ok(Pattern { alternatives })
    }

    /// Whether `name` matches the whole pattern.
    pub(crate) fn matches(&self, name: &str) -> bool {
        let text: Vec<char> = name.chars().collect();
        self.alternatives
            .iter()
            .any(|tokens| match_plain(tokens, &text))
    }
}

/// Greedy matching with backtracking to the last `*` only: enough for single-character tokens
/// and linear in the pattern per text position.
fn match_plain(tokens: &[Token], text: &[char]) -> bool {
    let (mut t, mut p) = (0, 0);
    // Where the last `*` was, and the text position it is currently made to end at.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match tokens.get(p) {
            Some(Token::AnyRun) => {
                star = Some((p, t));
                p += 1;
            }
            Some(token) if token.matches(text[t]) => {
                t += 1;
                p += 1;
            }
            _ => match star {
                // Let the last `*` swallow one more character and retry from there.
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    tokens[p..].iter().all(|token| *token == Token::AnyRun)
}

struct Parser<'a> {
    chars: Peekable<Chars<'a>>,
    pattern: &'a str,
}

impl Parser<'_> {
    /// Parses up to the end (or, `nested`, up to a `,` or `}` left for the caller) and returns
    /// the plain patterns it expands to.
    fn sequence(&mut self, nested: bool) -> Result<Vec<Vec<Token>>, PatternError> {
        let mut expanded: Vec<Vec<Token>> = vec![Vec::new()];
        while let Some(&c) = self.chars.peek() {
            if nested && (c == ',' || c == '}') {
                break;
            }
            self.chars.next();
            let token = match c {
                '*' => {
                    // `**` is gobwas's super-asterisk; without separators it is the same as `*`.
                    while self.chars.peek() == Some(&'*') {
                        self.chars.next();
                    }
                    Token::AnyRun
                }
                '?' => Token::AnyOne,
                '[' => self.class()?,
                '\\' => match self.chars.next() {
                    Some(escaped) => Token::Literal(escaped),
                    None => {
                        return Err(PatternError::DanglingEscape {
                            pattern: self.pattern.to_owned(),
                        });
                    }
                },
                '{' => {
                    let choices = self.alternatives()?;
                    expanded = self.product(&expanded, &choices)?;
                    continue;
                }
                other => Token::Literal(other),
            };
            for tokens in &mut expanded {
                tokens.push(token.clone());
            }
        }
        Ok(expanded)
    }

    /// After a `{`: the alternatives up to the matching `}`, each expanded.
    fn alternatives(&mut self) -> Result<Vec<Vec<Token>>, PatternError> {
        let mut choices = Vec::new();
        loop {
            choices.extend(self.sequence(true)?);
            if choices.len() > MAX_ALTERNATIVES {
                return Err(self.too_many());
            }
            match self.chars.next() {
                Some(',') => continue,
                Some('}') => return Ok(choices),
                _ => {
                    return Err(PatternError::UnclosedAlternatives {
                        pattern: self.pattern.to_owned(),
                    });
                }
            }
        }
    }

    fn product(
        &self,
        prefixes: &[Vec<Token>],
        choices: &[Vec<Token>],
    ) -> Result<Vec<Vec<Token>>, PatternError> {
        if prefixes.len().saturating_mul(choices.len()) > MAX_ALTERNATIVES {
            return Err(self.too_many());
        }
        Ok(prefixes
            .iter()
            .flat_map(|prefix| {
                choices.iter().map(move |choice| {
                    let mut tokens = prefix.clone();
                    tokens.extend(choice.iter().cloned());
                    tokens
                })
            })
            .collect())
    }

    /// After a `[`: the set up to the matching `]`.
    fn class(&mut self) -> Result<Token, PatternError> {
        let negated = self.chars.peek() == Some(&'!');
        if negated {
            self.chars.next();
        }
        let mut ranges = Vec::new();
        loop {
            let lo = match self.chars.next() {
                Some(']') => break,
                Some('\\') => self.chars.next(),
                other => other,
            };
            let Some(lo) = lo else {
                return Err(PatternError::UnclosedClass {
                    pattern: self.pattern.to_owned(),
                });
            };
            let mut hi = lo;
            if self.chars.peek() == Some(&'-') {
                self.chars.next();
                match self.chars.next() {
                    // `[a-]`: the dash is literal.
                    Some(']') => {
                        ranges.push((lo, lo));
                        ranges.push(('-', '-'));
                        break;
                    }
                    Some(end) => hi = end,
                    None => {
                        return Err(PatternError::UnclosedClass {
                            pattern: self.pattern.to_owned(),
                        });
                    }
                }
            }
            ranges.push((lo.min(hi), lo.max(hi)));
        }
        if ranges.is_empty() {
            return Err(PatternError::EmptyClass {
                pattern: self.pattern.to_owned(),
            });
        }
        Ok(Token::Class { negated, ranges })
    }

    fn too_many(&self) -> PatternError {
        PatternError::TooManyAlternatives {
            pattern: self.pattern.to_owned(),
            max: MAX_ALTERNATIVES,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn matches(pattern: &str, name: &str) -> bool {
        Pattern::compile(pattern).unwrap().matches(name)
    }

    #[test]
    fn literal_pattern_matches_only_itself() {
        assert!(matches("chat:index", "chat:index"));
        assert!(!matches("chat:index", "chat:index2"));
        assert!(!matches("chat:index", "chat:inde"));
        assert!(matches("", ""));
        assert!(!matches("", "x"));
    }

    #[test]
    fn star_matches_any_run_including_separators() {
        assert!(matches("*", ""));
        assert!(matches("*", "anything:at:all"));
        assert!(matches("chat:*", "chat:index"));
        assert!(matches("chat:*", "chat:"));
        assert!(!matches("chat:*", "news:index"));
        assert!(matches("*:index", "a:b:index"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
        assert!(matches("**", "x:y"));
    }

    #[test]
    fn star_backtracks_to_find_a_later_match() {
        assert!(matches("*ab", "aab"));
        assert!(matches("a*aab", "aaaab"));
        assert!(!matches("a*aab", "aaab2"));
    }

    #[test]
    fn question_mark_matches_one_character() {
        assert!(matches("user:?", "user:1"));
        assert!(!matches("user:?", "user:12"));
        assert!(matches("??", "éx"));
    }

    #[test]
    fn classes_match_sets_ranges_and_negations() {
        assert!(matches("room[12]", "room1"));
        assert!(!matches("room[12]", "room3"));
        assert!(matches("room[0-9]", "room7"));
        assert!(!matches("room[!0-9]", "room7"));
        assert!(matches("room[!0-9]", "roomx"));
        assert!(matches("a[x-]", "a-"));
        assert!(matches("a[\\]]", "a]"));
    }

    #[test]
    fn alternatives_match_any_branch() {
        assert!(matches("{chat,news}:*", "chat:1"));
        assert!(matches("{chat,news}:*", "news:2"));
        assert!(!matches("{chat,news}:*", "feed:3"));
        assert!(matches("x{a,{b,c}d}", "xcd"));
        assert!(matches("x{,y}", "x"));
        assert!(matches("x{,y}", "xy"));
    }

    #[test]
    fn escapes_make_special_characters_literal() {
        assert!(matches("a\\*", "a*"));
        assert!(!matches("a\\*", "ab"));
        assert!(matches("a,b}", "a,b}"));
    }

    #[test]
    fn malformed_patterns_are_errors() {
        for bad in ["[abc", "[]", "[!]", "{a,b", "a\\", "[a-"] {
            assert!(Pattern::compile(bad).is_err(), "{bad} should not compile");
        }
    }

    #[test]
    fn alternative_explosion_is_refused() {
        let bomb = "{a,b}".repeat(9);
        assert!(matches!(
            Pattern::compile(&bomb),
            Err(PatternError::TooManyAlternatives { .. })
        ));
        assert!(Pattern::compile(&"{a,b}".repeat(8)).is_ok());
    }

    #[test]
    fn many_stars_stay_fast() {
        let pattern = Pattern::compile(&"*a".repeat(50)).unwrap();
        let name = "a".repeat(40) + "b";
        assert!(!pattern.matches(&name));
    }
}
