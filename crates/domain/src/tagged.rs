//! Reading internally tagged events (`{"type": "MessageReceived", …}`)
//! without buffering them.
//!
//! serde's derive for an internally tagged enum cannot know where the tag
//! is, so it first copies the whole object into a buffer of its own, then
//! reads the variant from that copy. Every event serde writes starts with
//! its tag, so [`tag_first_enum!`] reads the tag, then hands the rest of
//! the object straight to the variant's fields. An object whose tag comes
//! later (an upcaster's output, a hand-written payload) takes the slow
//! path: its other fields are kept as JSON values until the tag is found.
//! Both paths accept the objects serde's derive accepts and report its
//! errors (unknown variant, missing field, wrong type). Unlike the derive,
//! they refuse an event written as an array (`["Variant", fields…]`), and
//! the fast path ignores a second tag after the first instead of refusing
//! it; nothing writes either.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::{MapAccessDeserializer, MapDeserializer};
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, Unexpected,
    VariantAccess, Visitor,
};
use serde::Deserialize;

/// An enum read as `{"<TAG>": "<Variant>", …fields}`; implemented by
/// [`tag_first_enum!`].
pub trait TagFirst: Sized {
    /// The name of the field that holds the variant.
    const TAG: &'static str;
    /// The enum's name, for error messages.
    const NAME: &'static str;

    /// Reads the enum from `variant`, a deserializer that presents the tag
    /// and the remaining fields as an externally tagged enum.
    fn deserialize_untagged<'de, D: Deserializer<'de>>(variant: D) -> Result<Self, D::Error>;
}

/// Declares an enum of struct variants written as `{"<tag>": "<Variant>",
/// …fields}`: it derives `Serialize` with `#[serde(tag = …)]` and reads
/// through [`TagFirst`]. The variants and fields are written once; a private
/// mirror, derived with `#[serde(remote)]`, gives serde the fields to read,
/// so both directions always agree on names, defaults and types.
macro_rules! tag_first_enum {
    (
        #[tag = $tag:literal]
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(
                $(#[$variant_meta:meta])*
                $variant:ident {
                    $(
                        $(#[$field_meta:meta])*
                        $field:ident : $ty:ty
                    ),* $(,)?
                }
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(serde::Serialize)]
        #[serde(tag = $tag)]
        $vis enum $name {
            $(
                $(#[$variant_meta])*
                $variant { $( $(#[$field_meta])* $field: $ty, )* },
            )*
        }

        const _: () = {
            type Target = $name;

            #[derive(serde::Deserialize)]
            #[serde(remote = "Target")]
            // Never built: only its derived `deserialize` is used.
            #[allow(dead_code, clippy::enum_variant_names)]
            enum Mirror {
                $(
                    $(#[$variant_meta])*
                    $variant { $( $(#[$field_meta])* $field: $ty, )* },
                )*
            }

            impl $crate::tagged::TagFirst for $name {
                const TAG: &'static str = $tag;
                const NAME: &'static str = stringify!($name);

                fn deserialize_untagged<'de, D: serde::Deserializer<'de>>(
                    variant: D,
                ) -> Result<Self, D::Error> {
                    Mirror::deserialize(variant)
                }
            }

            impl<'de> serde::Deserialize<'de> for $name {
                fn deserialize<D: serde::Deserializer<'de>>(
                    deserializer: D,
                ) -> Result<Self, D::Error> {
                    $crate::tagged::deserialize(deserializer)
                }
            }
        };
    };
}

/// Reads a [`TagFirst`] enum from an object.
pub fn deserialize<'de, T: TagFirst, D: Deserializer<'de>>(deserializer: D) -> Result<T, D::Error> {
    deserializer.deserialize_map(TaggedVisitor(PhantomData))
}

struct TaggedVisitor<T>(PhantomData<T>);

impl<'de, T: TagFirst> Visitor<'de> for TaggedVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} as an object with a `{}` field", T::NAME, T::TAG)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let Some(first) = map.next_key::<Text<'de>>()? else {
            return Err(de::Error::missing_field(T::TAG));
        };
        if first.as_str() == T::TAG {
            let tag = map.next_value::<Text<'de>>()?;
            return T::deserialize_untagged(Variant {
                tag: tag.as_str(),
                map,
            });
        }
        // The tag comes later: keep the fields seen until then.
        let mut fields = vec![(first.into_string(), map.next_value::<serde_json::Value>()?)];
        let mut tag = None;
        while let Some(key) = map.next_key::<Text<'de>>()? {
            if key.as_str() == T::TAG {
                if tag.is_some() {
                    return Err(de::Error::duplicate_field(T::TAG));
                }
                tag = Some(map.next_value::<Text<'de>>()?);
            } else {
                fields.push((key.into_string(), map.next_value()?));
            }
        }
        let tag = tag.ok_or_else(|| de::Error::missing_field(T::TAG))?;
        let rest = MapDeserializer::<_, serde_json::Error>::new(fields.into_iter());
        T::deserialize_untagged(Variant {
            tag: tag.as_str(),
            map: rest,
        })
        .map_err(de::Error::custom)
    }
}

/// The tag and the fields after it, shown to the mirror as an externally
/// tagged enum.
struct Variant<'t, A> {
    tag: &'t str,
    map: A,
}

impl<'de, A: MapAccess<'de>> Deserializer<'de> for Variant<'_, A> {
    type Error = A::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

impl<'de, A: MapAccess<'de>> EnumAccess<'de> for Variant<'_, A> {
    type Error = A::Error;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), A::Error> {
        let variant =
            seed.deserialize(IntoDeserializer::<A::Error>::into_deserializer(self.tag))?;
        Ok((variant, self))
    }
}

impl<'de, A: MapAccess<'de>> VariantAccess<'de> for Variant<'_, A> {
    type Error = A::Error;

    fn unit_variant(mut self) -> Result<(), A::Error> {
        while self
            .map
            .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
            .is_some()
        {}
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        seed.deserialize(MapAccessDeserializer::new(self.map))
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        _visitor: V,
    ) -> Result<V::Value, A::Error> {
        Err(de::Error::invalid_type(
            Unexpected::Map,
            &"a struct variant (tuple variants cannot be internally tagged)",
        ))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        visitor.visit_map(self.map)
    }
}

/// A key or tag: borrowed from the input when it has no escapes.
enum Text<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Text<'_> {
    fn as_str(&self) -> &str {
        match self {
            Text::Borrowed(text) => text,
            Text::Owned(text) => text,
        }
    }

    fn into_string(self) -> String {
        match self {
            Text::Borrowed(text) => text.to_owned(),
            Text::Owned(text) => text,
        }
    }
}

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Text<'de>, E> {
                Ok(Text::Borrowed(text))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Text<'de>, E> {
                Ok(Text::Owned(text.to_owned()))
            }

            fn visit_string<E: de::Error>(self, text: String) -> Result<Text<'de>, E> {
                Ok(Text::Owned(text))
            }
        }

        deserializer.deserialize_str(TextVisitor)
    }
}

#[cfg(test)]
mod tests {
    use serde::Serialize;
    use serde_json::{json, Value};

    /// The same enum, derived by serde: the reference for what is accepted.
    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    #[serde(tag = "type")]
    enum Derived {
        Opened {
            id: u32,
            #[serde(default)]
            note: Option<String>,
            labels: Vec<String>,
        },
        Closed {
            id: u32,
            at: f64,
        },
    }

    tag_first_enum! {
        #[tag = "type"]
        #[derive(Debug, PartialEq)]
        enum Fast {
            Opened {
                id: u32,
                #[serde(default)]
                note: Option<String>,
                labels: Vec<String>,
            },
            Closed { id: u32, at: f64 },
        }
    }

    fn both(text: &str) -> (Result<Derived, String>, Result<Fast, String>) {
        (
            serde_json::from_str(text).map_err(|e| e.to_string()),
            serde_json::from_str(text).map_err(|e| e.to_string()),
        )
    }

    fn same(text: &str) {
        let (derived, fast) = both(text);
        match (&derived, &fast) {
            (Ok(d), Ok(f)) => assert_eq!(
                serde_json::to_value(d).expect("json"),
                serde_json::to_value(f).expect("json"),
                "{text}"
            ),
            (Err(_), Err(_)) => {}
            _ => panic!("{text}: derived {derived:?}, tag first {fast:?}"),
        }
    }

    #[test]
    fn reads_whatever_the_derive_reads_wherever_the_tag_is() {
        for text in [
            r#"{"type":"Opened","id":1,"note":"n","labels":["a","b"]}"#,
            r#"{"id":1,"type":"Opened","labels":[]}"#,
            r#"{"labels":["x"],"id":7,"type":"Opened"}"#,
            r#"{"type":"Closed","at":1.5,"id":2}"#,
            r#"{"at":1.5,"id":2,"type":"Closed"}"#,
            r#"{"type":"Closed","at":1.5,"id":2,"extra":{"deep":[1,2]}}"#,
            r#"{"type":"Opened","id":1,"note":"tab\tand \"quote\"","labels":["é\u00e9"]}"#,
            r#"{"typ\u0065":"Closed","at":1,"id":3}"#,
        ] {
            same(text);
            assert!(both(text).1.is_ok(), "{text}");
        }
    }

    #[test]
    fn refuses_what_the_derive_refuses() {
        for text in [
            r#"{"type":"Missing","id":1}"#,
            r#"{"id":1,"type":"Missing"}"#,
            r#"{"type":"Closed","id":1}"#,
            r#"{"id":"one","type":"Closed","at":1}"#,
            r#"{"type":"Closed","id":-1,"at":1}"#,
            r#"{"id":1,"at":1}"#,
            r#"{}"#,
            r#"{"type":7,"id":1,"at":1}"#,
            r#""Closed""#,
            r#"{"type":"Closed","id":1,"at":1"#,
        ] {
            same(text);
            assert!(both(text).1.is_err(), "{text}");
        }
    }

    #[test]
    fn refuses_an_event_written_as_an_array() {
        let (derived, fast) = both(r#"["Closed",1,1]"#);
        assert!(derived.is_ok());
        assert!(fast.expect_err("array").contains("invalid type: sequence"));
    }

    #[test]
    fn names_the_unknown_variant_and_the_missing_field() {
        let (_, fast) = both(r#"{"type":"Missing","id":1}"#);
        assert!(fast
            .expect_err("unknown")
            .contains("unknown variant `Missing`"));
        let (_, fast) = both(r#"{"id":1,"at":2}"#);
        assert!(fast.expect_err("untagged").contains("missing field `type`"));
        let (_, fast) = both(r#"{"type":"Closed","id":1}"#);
        assert!(fast.expect_err("incomplete").contains("missing field `at`"));
    }

    #[test]
    fn reads_from_a_json_value_too() {
        let value: Value = json!({"id": 4, "labels": ["z"], "type": "Opened"});
        let fast: Fast = serde_json::from_value(value).expect("value");
        assert_eq!(
            fast,
            Fast::Opened {
                id: 4,
                note: None,
                labels: vec!["z".into()]
            }
        );
    }
}
