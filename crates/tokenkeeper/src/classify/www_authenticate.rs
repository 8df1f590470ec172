//! Just enough of RFC 7235 `WWW-Authenticate` parsing to read a Bearer challenge's `error`.
//!
//! A header may hold several challenges (`Basic realm="a", Bearer error="invalid_token"`), and
//! parameter values may be quoted strings with escapes. The parser is total: hostile input
//! yields `None`, never a panic, and its work is linear in the input.

/// Header values longer than this are not parsed.
const MAX_LEN: usize = 8 * 1024;

/// The `error` parameter of the first Bearer challenge in `header`, lower-cased.
pub(crate) fn bearer_error(header: &str) -> Option<String> {
    if header.len() > MAX_LEN {
        return None;
    }
    let mut lexer = Lexer::new(header);
    let mut in_bearer = false;
    loop {
        lexer.skip_separators();
        let word = lexer.token()?;
        lexer.skip_spaces();
        if lexer.eat('=') {
            lexer.skip_spaces();
            // `abc==`: the padding of a token68 credential, not a parameter.
            if matches!(lexer.peek(), None | Some(',' | '=')) {
                while lexer.eat('=') {}
                continue;
            }
            let value = lexer.value()?;
            if in_bearer && word.eq_ignore_ascii_case("error") {
                return Some(value.to_ascii_lowercase());
            }
        } else {
            // A word without `=` starts a new challenge (or is a token68, which has no params).
            if in_bearer {
                return None;
            }
            in_bearer = word.eq_ignore_ascii_case("bearer");
        }
    }
}

struct Lexer<'a> {
    rest: &'a str,
}

impl<'a> Lexer<'a> {
    fn new(input: &'a str) -> Self {
        Self { rest: input }
    }

    fn peek(&self) -> Option<char> {
        self.rest.chars().next()
    }

    fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn skip_spaces(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t']);
    }

    fn skip_separators(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t', ',']);
    }

    /// An RFC 7230 token (also accepts token68's `/`, `+` characters).
    fn token(&mut self) -> Option<&'a str> {
        let end = self
            .rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~/".contains(c)))
            .unwrap_or(self.rest.len());
        if end == 0 {
            return None;
        }
        let (token, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(token)
    }

    /// A token or a quoted-string with `\` escapes.
    fn value(&mut self) -> Option<String> {
        if !self.eat('"') {
            return self.token().map(str::to_owned);
        }
        let mut value = String::new();
        let mut chars = self.rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &self.rest[i + 1..];
                    return Some(value);
                }
                '\\' => value.push(chars.next()?.1),
                c => value.push(c),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_error;

    #[test]
    fn reads_the_bearer_error() {
        let cases = [
            (r#"Bearer error="invalid_token""#, Some("invalid_token")),
            (
                r#"Bearer realm="x", error="invalid_token", error_description="The access token expired""#,
                Some("invalid_token"),
            ),
            (
                r#"bearer error=insufficient_scope"#,
                Some("insufficient_scope"),
            ),
            (
                r#"Basic realm="a", Bearer error="invalid_token""#,
                Some("invalid_token"),
            ),
            (r#"Basic error="nope", Bearer realm="b""#, None),
            (r#"Bearer realm="tokenkeeper""#, None),
            (r#"Bearer realm="a\"b", error="x\"y""#, Some("x\"y")),
            (r#"Bearer abc==, Basic realm=x"#, None),
            (r#"Bearer error="unterminated"#, None),
            ("", None),
            ("=,=,\"", None),
        ];
        for (header, expected) in cases {
            assert_eq!(bearer_error(header).as_deref(), expected, "{header}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(header in ".{0,200}") {
            let _ = bearer_error(&header);
        }

        #[test]
        fn finds_the_error_among_noise(
            realm in "[a-z ]{0,20}",
            error in "[a-z_]{1,20}",
        ) {
            let header = format!(r#"Basic realm="{realm}", Bearer realm="{realm}", error="{error}""#);
            proptest::prop_assert_eq!(bearer_error(&header), Some(error));
        }
    }
}
