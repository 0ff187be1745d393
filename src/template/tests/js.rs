//! JavaScript's value semantics that the helper library relies on, checked against what
//! node prints (the differential test covers them through helpers; these pin the edges).

use serde_json::json;

use crate::template::helpers::js;

#[test]
fn numbers_print_as_javascript_prints_them() {
    for (f, want) in [
        (5.0, "5"),
        (-2.5, "-2.5"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e21, "1e+21"),
        (123456789012345680000.0, "123456789012345680000"),
        (1e-7, "1e-7"),
        (0.000001, "0.000001"),
        (1.5e300, "1.5e+300"),
        (f64::NAN, "NaN"),
        (f64::NEG_INFINITY, "-Infinity"),
        (-0.0, "0"),
    ] {
        assert_eq!(js::number_string(f), want, "{f}");
    }
}

#[test]
fn truthiness_string_and_number_conversions() {
    for (v, truthy) in [
        (json!([]), true),
        (json!({}), true),
        (json!("0"), true),
        (json!(0), false),
        (json!(""), false),
        (json!(null), false),
    ] {
        assert_eq!(js::truthy(&v), truthy, "{v}");
    }
    assert_eq!(js::string(&json!(["a", null, ["b", 1]])), "a,,b,1");
    assert_eq!(js::string(&json!({"k": 1})), "[object Object]");
    assert_eq!(js::number(&json!(" 12 ")), 12.0);
    assert_eq!(js::number(&json!("0x1f")), 31.0);
    assert!(js::number(&json!("12px")).is_nan());
    assert_eq!(js::number(&json!([7])), 7.0);
    assert_eq!(js::parse_float(&json!("3.5abc")), 3.5);
    assert_eq!(js::parse_int(&json!("-7.9")), -7.0);
}

#[test]
fn comparisons_follow_javascript() {
    assert!(js::loose_eq(&json!("12"), &json!(12)));
    assert!(!js::strict_eq(&json!("12"), &json!(12)));
    assert!(js::loose_eq(&json!(true), &json!(1)));
    assert!(js::loose_eq(&json!(["a", "b"]), &json!("a,b")));
    assert!(js::lt(&json!("10"), &json!("9")), "text compares as text");
    assert!(
        js::gt(&json!("10"), &json!(9)),
        "text against a number compares as numbers"
    );
    assert!(
        !js::lt(&json!("x"), &json!(1)) && !js::gt(&json!("x"), &json!(1)),
        "NaN"
    );
    assert!(js::lt(&json!("Z"), &json!("a")), "UTF-16 code units");
}

#[test]
fn stringify_keeps_key_order_and_indents() {
    let v: serde_json::Value =
        serde_json::from_str(r#"{"b":1,"a":[1,{"c":null}],"e":{}}"#).unwrap();
    assert_eq!(js::stringify(&v, 0), r#"{"b":1,"a":[1,{"c":null}],"e":{}}"#);
    assert_eq!(
        js::stringify(&v, 2),
        "{\n  \"b\": 1,\n  \"a\": [\n    1,\n    {\n      \"c\": null\n    }\n  ],\n  \"e\": {}\n}"
    );
}
