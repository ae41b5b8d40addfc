//! Checks of `Streaming<T>` in a method's signature: where it may stand and what it holds.

use syn::Type;

use crate::parse::{Method, is_streaming, streaming_item};
use crate::validate::Errors;

/// The type whose values cross the wire: a stream's item type, or the type itself. `None` for
/// a malformed `Streaming`, which `check_streams` alone reports.
pub(crate) fn wire_type(ty: &Type) -> Option<&Type> {
    match (is_streaming(ty), streaming_item(ty)) {
        (_, Some(item)) => Some(item),
        (true, None) => None,
        (false, None) => Some(ty),
    }
}

/// `Streaming<T>` is the whole type of one parameter, of the return type, or both; with one
/// item type; never in a one-way method.
pub(crate) fn check_streams(method: &Method<'_>, errors: &mut Errors) {
    let mut streams = 0;
    let whole = method.args.iter().map(|arg| arg.ty()).chain(method.output);
    for ty in whole {
        if !is_streaming(ty) {
            continue;
        }
        if streaming_item(ty).is_none() {
            errors.push(ty, "a stream names its item type: write `Streaming<T>`");
        }
        if method.args.iter().any(|arg| std::ptr::eq(arg.ty(), ty)) {
            streams += 1;
            if streams == 2 {
                errors.push(
                    ty,
                    "a method takes at most one stream of items: merge them into one \
                     `Streaming<T>` of an enum, or make two methods",
                );
            }
        }
    }
    let any = method.args.iter().map(|arg| arg.ty()).chain(method.output).any(is_streaming);
    if let (true, Some(oneway)) = (any, method.options.oneway) {
        errors.push_span(
            oneway,
            "a one-way call has no reply, so no stream: remove `oneway` or the `Streaming`",
        );
    }
}
