/// Runs `body` on `value` through an inout access: on a dictionary's `values[i]` or
/// `[key, default:]` that is the modify accessor, which yields the element in place, where a read
/// of it would copy the whole element (retaining every reference it holds) to use one field.
func modify<T, R>(_ value: inout T, _ body: (inout T) -> R) -> R { body(&value) }
