//! Plain-language reasons for the differences that break a reader, so that
//! `modelbus schema check` says more than a Confluent constant.

use super::rule::*;

/// Why a difference breaks the reader, for messages. Reader and writer are
/// the two schemas in the direction being checked.
pub(super) fn explain(rule: &str) -> &'static str {
    match rule {
        TYPE_CHANGED => "the type differs, so the reader rejects what the writer produced",
        TYPE_NARROWED => "the reader accepts only integers where the writer allowed any number",
        SCHEMA_ADDED => "the reader constrains array items the writer left unconstrained",
        REQUIRED_ATTRIBUTE_ADDED => "the reader requires a property the writer had optional",
        REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED | REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL => {
            "the reader requires a property the writer may omit; its default does not help, since \
             modelbus validates events as written and never fills defaults in (Confluent accepts this)"
        }
        REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL => {
            "the reader requires a new property that the writer's content model never produced"
        }
        REQUIRED_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL
        | REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_OPEN_CONTENT_MODEL
        | OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL
        | ITEM_ADDED_TO_OPEN_CONTENT_MODEL => {
            "the writer's content model is open, so its data may already carry this property or item \
             with any value, which the reader's new schema for it may reject (close the writer's model \
             with additionalProperties: false first)"
        }
        PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL | ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL => {
            "the reader's content model is closed and no longer declares this property or item, \
             which the writer produced"
        }
        PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
        | ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL => {
            "the property or item is gone from the reader, and the reader's schema for undeclared \
             ones does not accept what the writer produced"
        }
        PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
        | ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL => {
            "the reader declares a property or item that the writer's schema for undeclared ones \
             lets through with values the reader rejects"
        }
        ADDITIONAL_PROPERTIES_REMOVED
        | ADDITIONAL_ITEMS_REMOVED
        | UNEVALUATED_PROPERTIES_REMOVED
        | UNEVALUATED_ITEMS_REMOVED => "the reader forbids undeclared properties or items that the writer allowed",
        ADDITIONAL_PROPERTIES_NARROWED
        | ADDITIONAL_ITEMS_NARROWED
        | UNEVALUATED_PROPERTIES_NARROWED
        | UNEVALUATED_ITEMS_NARROWED => {
            "the reader constrains undeclared properties or items that the writer left free"
        }
        MAX_LENGTH_DECREASED
        | MAXIMUM_DECREASED
        | EXCLUSIVE_MAXIMUM_DECREASED
        | MAX_ITEMS_DECREASED
        | MAX_PROPERTIES_DECREASED
        | MAX_CONTAINS_DECREASED
        | MIN_LENGTH_INCREASED
        | MINIMUM_INCREASED
        | EXCLUSIVE_MINIMUM_INCREASED
        | MIN_ITEMS_INCREASED
        | MIN_PROPERTIES_INCREASED
        | MIN_CONTAINS_INCREASED
        | MULTIPLE_OF_EXPANDED => "the reader's limit is stricter than the writer's",
        PATTERN_CHANGED | MULTIPLE_OF_CHANGED | DEPENDENCY_ARRAY_CHANGED => {
            "the constraint changed, so some of the writer's data may fail the reader's"
        }
        ENUM_ARRAY_NARROWED => "the reader lacks enum values the writer allowed",
        ENUM_ARRAY_CHANGED => "the allowed values differ",
        DEPENDENCY_ARRAY_EXTENDED => "the reader requires more dependent properties than the writer",
        PRODUCT_TYPE_EXTENDED => "the reader adds a constraint (allOf branch or keyword) the writer lacked",
        SUM_TYPE_NARROWED => "the reader has fewer alternatives than the writer",
        COMBINED_TYPE_CHANGED => "the combinator (allOf/anyOf/oneOf) changed incompatibly",
        COMBINED_TYPE_SUBSCHEMAS_CHANGED => "some alternative of the writer has no reader alternative that can read it",
        NOT_TYPE_EXTENDED => "the reader's `not` excludes values the writer's allowed",
        r if r.ends_with("_ADDED") => "the reader adds a constraint the writer did not have",
        _ => "the reader may reject data the writer produced",
    }
}
