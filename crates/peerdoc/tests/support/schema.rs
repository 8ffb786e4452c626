//! Checks HTTP answers against the OpenAPI document the daemon serves: the status must
//! be documented for the operation, the content type must be the documented one, and a
//! JSON body must match the documented schema.
//!
//! A small validator over the subset of JSON Schema that utoipa emits (`$ref`, `type`,
//! `properties`, `required`, `additionalProperties`, `items`, `oneOf`/`anyOf`/`allOf`,
//! `enum`, `const`, `minimum`/`maximum`), stricter than JSON Schema in one way: an
//! object schema that lists `properties` admits no other property, whatever
//! `additionalProperties` says, so a field a handler sends without the type changing
//! fails. A keyword it does not know fails too, rather than being skipped.

#![allow(dead_code, unreachable_pub)]

use serde_json::Value;

/// Keywords that only describe (they constrain nothing the validator checks).
const ANNOTATIONS: &[&str] = &[
    "description",
    "title",
    "example",
    "examples",
    "default",
    "format",
    "deprecated",
    "readOnly",
    "writeOnly",
    "contentMediaType",
    "contentEncoding",
];

/// The served OpenAPI document.
#[derive(Debug, Clone)]
pub struct Spec {
    pub doc: Value,
}

impl Spec {
    pub fn new(doc: Value) -> Self {
        Self { doc }
    }

    /// The operation `method template`, e.g. `("get", "/v1/docs/{id}")`.
    pub fn operation(&self, method: &str, template: &str) -> Result<&Value, String> {
        self.doc["paths"][template][method]
            .as_object()
            .map(|_| &self.doc["paths"][template][method])
            .ok_or_else(|| format!("{method} {template} is not documented"))
    }

    /// The documented response for `status`, `$ref`s to `components/responses` resolved.
    pub fn response(&self, method: &str, template: &str, status: u16) -> Result<&Value, String> {
        let operation = self.operation(method, template)?;
        let response = operation["responses"]
            .get(status.to_string())
            .ok_or_else(|| {
                format!(
                    "{method} {template} answered {status}, which is not documented (documented: {:?})",
                    operation["responses"]
                        .as_object()
                        .map(|r| r.keys().cloned().collect::<Vec<_>>())
                        .unwrap_or_default()
                )
            })?;
        self.resolve(response)
    }

    fn resolve<'a>(&'a self, value: &'a Value) -> Result<&'a Value, String> {
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference
                    .strip_prefix('#')
                    .ok_or_else(|| format!("{reference} is not a local reference"))?;
                let target = self
                    .doc
                    .pointer(pointer)
                    .ok_or_else(|| format!("{reference} points at nothing"))?;
                self.resolve(target)
            }
            None => Ok(value),
        }
    }

    /// Checks one answer: documented status, documented content type, and a JSON body
    /// that matches the documented schema.
    pub fn check_answer(
        &self,
        method: &str,
        template: &str,
        status: u16,
        content_type: &str,
        body: &[u8],
    ) -> Result<(), String> {
        let response = self.response(method, template, status)?;
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            return if body.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{method} {template} {status} is documented without a body, but sent {:?}",
                    String::from_utf8_lossy(body)
                ))
            };
        };
        let essence = |ct: &str| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        };
        let (_, media) = content
            .iter()
            .find(|(documented, _)| essence(documented) == essence(content_type))
            .ok_or_else(|| {
                format!(
                    "{method} {template} {status} sent Content-Type {content_type:?}, documented: {:?}",
                    content.keys().collect::<Vec<_>>()
                )
            })?;
        if essence(content_type) != "application/json" {
            return Ok(());
        }
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            format!(
                "{method} {template} {status}: the body is not JSON ({e}): {}",
                String::from_utf8_lossy(body)
            )
        })?;
        let errors = self.validate(&media["schema"], &value, "");
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{method} {template} {status}: the body does not match its schema:\n  {}\nbody: {value}",
                errors.join("\n  ")
            ))
        }
    }

    /// Every way `value` (at JSON pointer `at`) fails `schema`; empty when it matches.
    pub fn validate(&self, schema: &Value, value: &Value, at: &str) -> Vec<String> {
        let mut errors = Vec::new();
        self.check(schema, value, at, &mut errors);
        errors
    }

    fn check(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        let Some(keywords) = schema.as_object() else {
            if schema != &Value::Bool(true) {
                errors.push(format!("{at}: the schema {schema} is not an object"));
            }
            return;
        };
        for (keyword, argument) in keywords {
            match keyword.as_str() {
                "$ref" => match self.resolve(schema) {
                    Ok(target) => self.check(target, value, at, errors),
                    Err(e) => errors.push(format!("{at}: {e}")),
                },
                "type" => check_type(argument, value, at, errors),
                "enum" => {
                    if !argument.as_array().is_some_and(|e| e.contains(value)) {
                        errors.push(format!("{at}: {value} is not one of {argument}"));
                    }
                }
                "const" => {
                    if argument != value {
                        errors.push(format!("{at}: {value} is not {argument}"));
                    }
                }
                "minimum" | "maximum" => check_bound(keyword, argument, value, at, errors),
                "properties" | "required" | "additionalProperties" => {
                    // Checked together, once.
                    if keyword == "properties"
                        || (keyword == "required" && !keywords.contains_key("properties"))
                        || (keyword == "additionalProperties"
                            && !keywords.contains_key("properties")
                            && !keywords.contains_key("required"))
                    {
                        self.check_object(keywords, value, at, errors);
                    }
                }
                "items" => {
                    if let Some(items) = value.as_array() {
                        for (i, item) in items.iter().enumerate() {
                            self.check(argument, item, &format!("{at}/{i}"), errors);
                        }
                    }
                }
                "oneOf" | "anyOf" => {
                    let branches = argument.as_array().cloned().unwrap_or_default();
                    let failures: Vec<Vec<String>> = branches
                        .iter()
                        .map(|branch| self.validate(branch, value, at))
                        .collect();
                    let matched = failures.iter().filter(|f| f.is_empty()).count();
                    let ok = if keyword == "oneOf" {
                        matched == 1
                    } else {
                        matched >= 1
                    };
                    if !ok {
                        errors.push(format!(
                            "{at}: {value} matches {matched} of the {keyword} branches; {}",
                            failures
                                .iter()
                                .enumerate()
                                .map(|(i, f)| format!("branch {i}: {}", f.join("; ")))
                                .collect::<Vec<_>>()
                                .join(" | ")
                        ));
                    }
                }
                "allOf" => {
                    for branch in argument.as_array().cloned().unwrap_or_default() {
                        self.check(&branch, value, at, errors);
                    }
                }
                other if ANNOTATIONS.contains(&other) => {}
                other => errors.push(format!(
                    "{at}: the validator does not know the keyword {other:?}; teach it before \
                     relying on it"
                )),
            }
        }
    }

    fn check_object(
        &self,
        keywords: &serde_json::Map<String, Value>,
        value: &Value,
        at: &str,
        errors: &mut Vec<String>,
    ) {
        let Some(object) = value.as_object() else {
            // `type` reports the mismatch.
            return;
        };
        let properties = keywords.get("properties").and_then(Value::as_object);
        for required in keywords
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !object.contains_key(required) {
                errors.push(format!("{at}: the required field {required:?} is missing"));
            }
        }
        for (name, field) in object {
            let here = format!("{at}/{name}");
            match properties.and_then(|p| p.get(name)) {
                Some(schema) => self.check(schema, field, &here, errors),
                None => match (properties, keywords.get("additionalProperties")) {
                    // A documented object: nothing undocumented is allowed.
                    (Some(_), _) | (None, Some(Value::Bool(false))) => {
                        errors.push(format!("{here}: the field {name:?} is not documented"));
                    }
                    (None, Some(schema @ Value::Object(_))) => {
                        self.check(schema, field, &here, errors);
                    }
                    // A free-form object (document content): anything goes.
                    (None, _) => {}
                },
            }
        }
    }
}

fn check_type(expected: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let names: Vec<&str> = match expected {
        Value::String(name) => vec![name.as_str()],
        Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
        _ => {
            errors.push(format!("{at}: type {expected} is not a type"));
            return;
        }
    };
    let fits = |name: &str| match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "number" => value.is_number(),
        "integer" => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    };
    if !names.iter().any(|name| fits(name)) {
        errors.push(format!("{at}: {value} is not of type {expected}"));
    }
}

fn check_bound(keyword: &str, bound: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let (Some(bound), Some(number)) = (bound.as_f64(), value.as_f64()) else {
        return;
    };
    let ok = if keyword == "minimum" {
        number >= bound
    } else {
        number <= bound
    };
    if !ok {
        errors.push(format!("{at}: {value} is past the {keyword} {bound}"));
    }
}
