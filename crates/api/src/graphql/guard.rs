//! What a query may cost, decided before anything runs.
//!
//! A query's cost is the sum of its fields, where a connection costs its
//! page size (`first`/`last`, or the default) times the cost of what is
//! selected under it: `conversations(first: 200) { nodes { messages(first:
//! 200) { … } } }` costs 200 × 200 × the message selection. The schema
//! refuses a query whose cost exceeds [`MAX_COST`] or whose depth exceeds
//! [`MAX_DEPTH`]; this extension also caps the query text, its fields and
//! its aliases (one field asked for many times under aliases multiplies
//! its work), and gives every refusal before execution a code:
//! `QUERY_TOO_COSTLY` for the limits, `BAD_REQUEST` for a query that does
//! not parse or does not validate.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextValidation,
};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ErrorExtensionValues, ServerError, ServerResult, ValidationResult, Variables};

/// The most a query may cost (see the module's doc).
pub const MAX_COST: usize = 10_000;
/// The deepest selection a query may have.
pub const MAX_DEPTH: usize = 16;
/// The longest query text, in bytes.
pub const MAX_QUERY_BYTES: usize = 32 * 1024;
/// Fields in a query, counting every fragment once per use.
pub const MAX_FIELDS: usize = 500;
/// Aliased fields in a query.
pub const MAX_ALIASES: usize = 30;
/// Ids in a list argument such as `channelIds`.
pub const MAX_LIST_ARGUMENT: usize = 100;

/// The error a client gets for a query over a limit.
pub fn too_costly(message: String) -> ServerError {
    coded(ServerError::new(message, None), "QUERY_TOO_COSTLY")
}

/// The error a client gets for a request that is not GraphQL.
pub fn bad_request(message: String) -> ServerError {
    coded(ServerError::new(message, None), "BAD_REQUEST")
}

fn coded(mut error: ServerError, code: &str) -> ServerError {
    let mut extensions = error.extensions.take().unwrap_or_default();
    extensions.set("code", code);
    error.extensions = Some(extensions);
    error
}

fn has_code(error: &ServerError) -> bool {
    error
        .extensions
        .as_ref()
        .is_some_and(|e: &ErrorExtensionValues| e.get("code").is_some())
}

/// Installs the limits on a schema.
pub struct QueryGuard;

impl ExtensionFactory for QueryGuard {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(QueryGuard)
    }
}

#[async_trait::async_trait]
impl Extension for QueryGuard {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if query.len() > MAX_QUERY_BYTES {
            return Err(too_costly(format!(
                "the query is {} bytes long; at most {MAX_QUERY_BYTES} are accepted",
                query.len()
            )));
        }
        let document = next.run(ctx, query, variables).await.map_err(|e| {
            if has_code(&e) {
                e
            } else {
                coded(e, "BAD_REQUEST")
            }
        })?;
        let mut count = Count::default();
        for (_, operation) in document.operations.iter() {
            count.selection_set(&document, &operation.node.selection_set.node, 0);
        }
        if count.fields > MAX_FIELDS {
            return Err(too_costly(format!(
                "the query selects {} fields; at most {MAX_FIELDS} are accepted",
                count.fields
            )));
        }
        if count.aliases > MAX_ALIASES {
            return Err(too_costly(format!(
                "the query uses {} aliases; at most {MAX_ALIASES} are accepted",
                count.aliases
            )));
        }
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|error| match error.message.as_str() {
                    _ if has_code(&error) => error,
                    "Query is too complex." => too_costly(format!(
                        "the query costs more than {MAX_COST} (each connection counts its page size \
                         times what is selected under it): ask for smaller pages or fewer fields"
                    )),
                    "Query is nested too deep." => too_costly(format!(
                        "the query is nested deeper than {MAX_DEPTH} levels"
                    )),
                    _ => coded(error, "BAD_REQUEST"),
                })
                .collect()
        })
    }
}

/// Fields and aliases of a document, fragments counted where used.
#[derive(Default)]
struct Count {
    fields: usize,
    aliases: usize,
}

impl Count {
    fn selection_set(&mut self, document: &ExecutableDocument, set: &SelectionSet, depth: usize) {
        // Fragments may spread each other; the depth limit stops a cycle
        // (which validation refuses anyway) from recursing for ever.
        if depth > MAX_DEPTH * 2 || self.fields > MAX_FIELDS {
            return;
        }
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => {
                    self.fields += 1;
                    if field.node.alias.is_some() {
                        self.aliases += 1;
                    }
                    self.selection_set(document, &field.node.selection_set.node, depth + 1);
                }
                Selection::FragmentSpread(spread) => {
                    if let Some(fragment) = document.fragments.get(&spread.node.fragment_name.node)
                    {
                        self.selection_set(document, &fragment.node.selection_set.node, depth + 1);
                    }
                }
                Selection::InlineFragment(inline) => {
                    self.selection_set(document, &inline.node.selection_set.node, depth + 1);
                }
            }
        }
    }
}
