//! [`LoginKey`]: what identifies one login of a [`Sessions`](crate::Sessions) collection, and
//! the name it has in a shared store.

use std::fmt::Write as _;
use std::hash::Hash;
use std::sync::Arc;

/// A key of a [`Sessions`](crate::Sessions) collection: a user, tenant or connection id, and
/// optionally what the tokens are for (audience, resource, scope) as a tuple
/// `(user, audience)`. Two keys that differ in any part are two logins: a token obtained for
/// one is never attached for the other.
///
/// [`store_name`](Self::store_name) is the key's name in a shared store (a file name, a Redis
/// key, a PostgreSQL row). Distinct keys must have distinct names: the implementations here
/// guarantee it (strings as they are, integers in decimal, tuple parts escaped and joined by
/// `:`). For a type of your own, name every field that makes it distinct.
///
/// ```
/// use tokenkeeper::keyed::LoginKey;
///
/// assert_eq!(42u64.store_name(), "42");
/// assert_eq!(("alice".to_owned(), "https://api.a".to_owned()).store_name(), "alice:https%3A//api.a");
/// // Nested or not, parts never run into each other.
/// assert_ne!(("a:b", "c").store_name(), ("a", "b:c").store_name());
/// ```
pub trait LoginKey: Hash + Eq + Clone + Send + Sync + 'static {
    /// Appends this key's name in a shared store to `out`.
    fn write_store_name(&self, out: &mut String);

    /// This key's name in a shared store.
    fn store_name(&self) -> String {
        let mut name = String::new();
        self.write_store_name(&mut name);
        name
    }
}

macro_rules! string_keys {
    ($($t:ty),*) => {$(
        impl LoginKey for $t {
            fn write_store_name(&self, out: &mut String) {
                out.push_str(self);
            }
        }
    )*};
}
string_keys!(String, &'static str, Box<str>, Arc<str>);

macro_rules! integer_keys {
    ($($t:ty),*) => {$(
        impl LoginKey for $t {
            fn write_store_name(&self, out: &mut String) {
                // Writing to a String cannot fail.
                let _ = write!(out, "{self}");
            }
        }
    )*};
}
integer_keys!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize
);

/// A tuple part's name with `%` and `:` escaped, so the `:` between parts is never ambiguous.
fn write_part(part: &impl LoginKey, out: &mut String) {
    let name = part.store_name();
    for c in name.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            c => out.push(c),
        }
    }
}

macro_rules! tuple_keys {
    ($first:ident $(, $rest:ident)*) => {
        impl<$first: LoginKey $(, $rest: LoginKey)*> LoginKey for ($first, $($rest),*) {
            #[allow(non_snake_case)]
            fn write_store_name(&self, out: &mut String) {
                let ($first, $($rest),*) = self;
                write_part($first, out);
                $(
                    out.push(':');
                    write_part($rest, out);
                )*
            }
        }
    };
}
tuple_keys!(A, B);
tuple_keys!(A, B, C);
tuple_keys!(A, B, C, D);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Distinct tuple keys have distinct names, whatever their parts contain.
        #[test]
        fn tuple_names_are_injective(a in ".{0,6}", b in ".{0,6}", c in ".{0,6}", d in ".{0,6}") {
            let one = (a.clone(), b.clone());
            let two = (c.clone(), d.clone());
            prop_assert_eq!(one == two, one.store_name() == two.store_name());
            let nested_left = ((a.clone(), b.clone()), c.clone());
            let nested_right = (a, (b, c));
            prop_assert_ne!(nested_left.store_name(), nested_right.store_name());
        }
    }
}
