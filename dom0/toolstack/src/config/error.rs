//! Configuration errors: every one names the file, line, column and, where
//! there is one, the domain and field it is about.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name as given to [`crate::config::parse`].
    pub file: String,
    /// 1-based line of the offending key or value.
    pub line: usize,
    /// 1-based column (in characters) of the offending key or value.
    pub column: usize,
    /// `domain "web"`, or `domain #2` when the domain has no usable name.
    pub domain: Option<String>,
    /// The key the error is about (`memory`, `vcpus`, ...).
    pub field: Option<String>,
    /// What is wrong, e.g. `expected an integer number of MiB, found "lots"`.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if let Some(d) = &self.domain {
            write!(f, "{d}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "field \"{field}\": ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one file (never empty), in file order. The whole
/// file is checked before anything is created, so a caller that gets this
/// has created nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub(crate) Vec<ConfigError>);

impl ConfigErrors {
    /// The errors, in the order of their position in the file.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }
}

impl fmt::Display for ConfigErrors {
    /// One error per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// 1-based line and column (counted in characters) of byte `offset` in
/// `text`; an offset past the end, or inside a character, is clamped.
pub(crate) fn position(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Collects errors for one file.
pub(crate) struct Sink<'a> {
    pub file: &'a str,
    pub text: &'a str,
    pub errors: Vec<ConfigError>,
}

impl Sink<'_> {
    pub fn push(&mut self, at: usize, domain: Option<&str>, field: Option<&str>, msg: String) {
        let (line, column) = position(self.text, at);
        self.errors.push(ConfigError {
            file: self.file.into(),
            line,
            column,
            domain: domain.map(Into::into),
            field: field.map(Into::into),
            message: msg,
        });
    }
}
