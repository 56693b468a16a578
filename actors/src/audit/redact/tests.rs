use super::*;
use serde_json::json;

fn redacted(mut value: Value) -> Value {
    Redactor {
        max_value_chars: 10,
    }
    .redact(&mut value);
    value
}

fn scrubbed(text: &str) -> String {
    scrub(text).into_owned()
}

#[test]
fn secret_keys_are_redacted_at_any_depth() {
    let out = redacted(json!({
        "password": "hunter2", "api_key": "k", "Authorization": "Bearer x",
        "nested": {"client_secret": "s", "access_token": "t", "X-Api-Key": "k",
                   "list": [{"db_password": "p", "cookie": "c"}]},
        "keyword": "kept", "monkey": "kept", "name": "kept"
    }));
    assert_eq!(
        out,
        json!({
            "password": REDACTED, "api_key": REDACTED, "Authorization": REDACTED,
            "nested": {"client_secret": REDACTED, "access_token": REDACTED, "X-Api-Key": REDACTED,
                       "list": [{"db_password": REDACTED, "cookie": REDACTED}]},
            "keyword": "kept", "monkey": "kept", "name": "kept"
        })
    );
}

#[test]
fn camel_kebab_and_upper_case_names_are_the_same_name() {
    for key in [
        "clientSecret",
        "accessToken",
        "privateKey",
        "refreshToken",
        "CLIENT_SECRET",
        "client-secret",
        "clientsecret",
        "ClientSecret",
        "apiKey",
        "APIKey",
        "API_KEY",
        "x-api-key",
        "apikey",
        "passwd",
        "pwd",
        "userPassword",
        "jwt",
        "idJwt",
        "session",
        "userSession",
        "signature",
        "X-Hub-Signature",
        "authorization",
        "Proxy-Authorization",
        "cookie",
        "Set-Cookie",
        "credentials",
        "awsSecretAccessKey",
        "sig",
        "basic_auth",
        "sshKey",
        "key",
        "secrets",
    ] {
        assert!(is_secret_key(key), "{key:?} is a secret name");
    }
}

/// The keys the service writes into `details` itself (every
/// `with_details`/`json!` in src/ and actors/src), and the usual
/// harmless neighbours of secret names, stay legible.
#[test]
fn the_services_own_keys_and_harmless_neighbours_stay() {
    for key in [
        // The service's own.
        "token_kind",
        "token_id",
        "authentication_type",
        "media_buy_id",
        "principal_id",
        "tenant_id",
        "webhook",
        "webhook_id",
        "url",
        "endpoint",
        "changed",
        "change",
        "scope",
        "role",
        "rule",
        "route",
        "method",
        "status_code",
        "reason",
        "user_email",
        "last_event_id",
        "config_id",
        "creative_ids",
        // Harmless neighbours.
        "session_id",
        "sessionId",
        "signature_valid",
        "signatureValid",
        "public_key",
        "publicKey",
        "idempotency_key",
        "keyword",
        "monkey",
        "oauth",
        "auth_type",
        "max_tokens",
        "input_tokens",
        "token_count",
        "password_length",
        "secretary",
        "private_key_id",
        "cookie_consent",
    ] {
        assert!(!is_secret_key(key), "{key:?} is not a secret name");
    }
}

/// The allocation-free comparison, held to the rule written plainly:
/// split into words at separators and camelCase humps, lowercase, join.
fn reference_is_secret_key(key: &str) -> bool {
    let chars: Vec<char> = key.chars().collect();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii() && is_separator(c as u8) {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            continue;
        }
        let before = i.checked_sub(1).map(|j| chars[j]);
        let after = chars.get(i + 1).copied();
        let hump = c.is_ascii_uppercase()
            && before.is_some_and(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || (b.is_ascii_uppercase() && after.is_some_and(|a| a.is_ascii_lowercase()))
            });
        if hump && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        word.push(c.to_ascii_lowercase());
    }
    if !word.is_empty() {
        words.push(word);
    }
    let normal: String = words.concat();
    let secret = SECRET_NAMES.contains(&normal.as_str())
        || SECRET_ENDINGS.iter().any(|e| normal.ends_with(e))
        || words
            .last()
            .is_some_and(|w| SECRET_LAST_WORDS.contains(&w.as_str()));
    secret && !NOT_SECRET.contains(&normal.as_str())
}

#[test]
fn key_names_are_compared_as_words_without_allocating() {
    let keys = [
        "",
        "-",
        "_key",
        "key_",
        "KEY",
        "keys",
        "Token",
        "tokén",
        "é_token",
        "API-KEY",
        "x-api-key",
        "my_Secret",
        "set-cookie",
        "Set_Cookie",
        "session-COOKIE",
        "Bearer",
        "bearer_",
        "ß_password",
        "sshKEY",
        "sshKeY",
        "APIKeY",
        "SSHKey",
        "ssh2Key",
        "a.b.sig",
        "MonKey",
        "turkey",
        "public-key",
        "PUBLIC_KEYS",
    ];
    for key in keys {
        assert_eq!(is_secret_key(key), reference_is_secret_key(key), "{key:?}");
    }
}

#[test]
fn budget_keys_are_compared_as_lowercase() {
    let budget = |key: &str| {
        let key = key.to_ascii_lowercase();
        key == "budget" || key.ends_with("_budget")
    };
    for key in [
        "budget",
        "BUDGET",
        "total_Budget",
        "total-budget",
        "budgets",
        "é_budget",
        "_budget",
        "xbudget",
    ] {
        assert_eq!(is_budget_key(key), budget(key), "{key:?}");
    }
}

#[test]
fn a_secret_key_hides_a_whole_object_and_keeps_a_flag() {
    assert_eq!(
        redacted(json!({"credentials": {"user": "u", "pass": "p"}})),
        json!({"credentials": REDACTED})
    );
    assert_eq!(
        redacted(json!({"has_password": true, "token": null, "pin_token": 1234})),
        json!({"has_password": true, "token": null, "pin_token": REDACTED})
    );
}

#[test]
fn secret_shapes_in_text_lose_their_secret_part_only() {
    let cases = [
        (
            "auth failed with Bearer ovs_0123456789abcdef0123456789abcdef",
            "auth failed with Bearer [REDACTED]",
        ),
        (
            "Authorization: basic dXNlcjpwYXNz",
            "Authorization: basic [REDACTED]",
        ),
        ("Bearer token missing", "Bearer token missing"),
        ("Basic authentication failed", "Basic authentication failed"),
        (
            "token ovs_9f86d081884c7d659a2feaa0c55ad015 leaked",
            "token ovs_[REDACTED] leaked",
        ),
        (
            "posting to https://hooks.slack.com/services/T0001/B0002/XXXXXXXXXXXXXXXXXXXXXXXX failed",
            "posting to https://hooks.slack.com/services/[REDACTED] failed",
        ),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl here",
            "jwt [REDACTED] here",
        ),
        ("key AKIAIOSFODNN7EXAMPLE used", "key AKIA[REDACTED] used"),
        (
            "db postgres://app:s3cr%40t@db.internal:5432/x down",
            "db postgres://app:[REDACTED]@db.internal:5432/x down",
        ),
        (
            "GET /cb?code=1&access_token=abc.def&state=ok",
            "GET /cb?code=1&access_token=[REDACTED]&state=ok",
        ),
        ("sig=deadbeef; path=/", "sig=[REDACTED]; path=/"),
        (
            r#"upstream said {"client_secret": "abc", "user": "bob"}"#,
            r#"upstream said {"client_secret": "[REDACTED]", "user": "bob"}"#,
        ),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nIBAAK\n-----END RSA PRIVATE KEY----- ok",
            "-----BEGIN RSA PRIVATE KEY-----[REDACTED]-----END RSA PRIVATE KEY----- ok",
        ),
        (
            "cut -----BEGIN PRIVATE KEY-----\nMIIEow",
            "cut -----BEGIN PRIVATE KEY-----[REDACTED]",
        ),
        (
            "slack xoxb-123456-abcdefgh said no",
            "slack xoxb-[REDACTED] said no",
        ),
        // Nothing secret: untouched.
        ("a=1&b=two, monkey=banana", "a=1&b=two, monkey=banana"),
        (
            "https://example.com/path?q=1",
            "https://example.com/path?q=1",
        ),
        (
            "webhook https://hooks.slack.com/services/T…/B…/****",
            "webhook https://hooks.slack.com/services/T…/B…/****",
        ),
        ("trip to Asia", "trip to Asia"),
    ];
    for (text, expected) in cases {
        assert_eq!(scrubbed(text), expected, "{text:?}");
    }
}

#[test]
fn a_second_pass_changes_nothing() {
    for text in [
        "Bearer abc123def456 and token=xyz and ovs_0123456789abcdef",
        "https://u:p@h/x?password=1 https://hooks.slack.com/services/T1/B2/abcdefghij",
    ] {
        let once = scrubbed(text);
        assert_ne!(once, text);
        assert_eq!(scrubbed(&once), once);
    }
}

#[test]
fn events_are_redacted_in_every_text_field() {
    let mut event = AuditEvent::new("login", chrono::Utc::now());
    event.principal_name = Some("svc Bearer abcdef0123456789".into());
    event.principal_id = Some("ovs_0123456789abcdef".into());
    event.adapter_id = Some("gam AKIAIOSFODNN7EXAMPLE".into());
    event.error = Some("failed: password=hunter2\0".into());
    event.details = json!({"accessToken": "t", "note": "see eyJa1.eyJb2.c3"});
    Redactor {
        max_value_chars: 1_000,
    }
    .redact_event(&mut event);
    assert_eq!(
        event.principal_name.as_deref(),
        Some("svc Bearer [REDACTED]")
    );
    assert_eq!(event.principal_id.as_deref(), Some("ovs_[REDACTED]"));
    assert_eq!(event.adapter_id.as_deref(), Some("gam AKIA[REDACTED]"));
    assert_eq!(event.error.as_deref(), Some("failed: password=[REDACTED]"));
    assert_eq!(
        event.details,
        json!({"accessToken": REDACTED, "note": "see [REDACTED]"})
    );
}

#[test]
fn a_key_holding_a_secret_is_renamed() {
    assert_eq!(
        redacted(json!({"Bearer abcdef0123456789": 1})),
        json!({"Bearer [REDACTED]": 1})
    );
}

#[test]
fn secrets_go_before_the_cut() {
    // Cut first, the token would keep 4 characters the scan no longer
    // recognises.
    let mut text = "x ovs_0123456789abcdef0123".to_owned();
    Redactor { max_value_chars: 8 }.redact_text(&mut text);
    assert_eq!(text, "x ovs_[R…[truncated 8 chars]");
}

#[test]
fn long_strings_are_truncated_with_a_marker() {
    assert_eq!(
        redacted(json!({"note": "ééééééééééxyz"})),
        json!({"note": "éééééééééé…[truncated 3 chars]"})
    );
    assert_eq!(redacted(json!({"note": "short"})), json!({"note": "short"}));
}

#[test]
fn decimal_budgets_become_numbers() {
    assert_eq!(
        redacted(
            json!({"budget": "5000.50", "total_budget": "12000", "daily_budget": "n/a", "note": "5000.50"})
        ),
        json!({"budget": 5000.5, "total_budget": 12000, "daily_budget": "n/a", "note": "5000.50"})
    );
}

#[test]
fn nul_characters_are_removed() {
    assert_eq!(redacted(json!({"a\0b": "c\0d"})), json!({"ab": "cd"}));
}

#[test]
fn negative_zero_loses_its_sign() {
    assert_eq!(redacted(json!({"x": -0.0})).to_string(), r#"{"x":0}"#);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Credential material: letters and digits with at least one digit
    /// (so not a word of prose), 13 to 41 characters.
    const MATERIAL: &str = "[A-Za-z0-9]{4,20}[0-9][A-Za-z0-9]{8,20}";

    /// A secret as it would be written, and the part of it that must
    /// not survive redaction.
    fn secret() -> impl Strategy<Value = (String, String)> {
        prop_oneof![
            (
                prop::sample::select(vec!["Bearer", "bearer", "BEARER", "Basic"]),
                MATERIAL
            )
                .prop_map(|(scheme, m)| (format!("{scheme} {m}"), m)),
            "[0-9a-f]{64}".prop_map(|m| (format!("ovs_{m}"), m)),
            ("[A-Z0-9]{9}", "[A-Z0-9]{9}", "[A-Za-z0-9]{24}").prop_map(|(t, b, m)| (
                format!("https://hooks.slack.com/services/T{t}/B{b}/{m}"),
                m
            )),
            (
                "[A-Za-z0-9_-]{10,30}",
                "[A-Za-z0-9_-]{10,30}",
                "[A-Za-z0-9_-]{20,43}"
            )
                .prop_map(|(h, p, sig)| (format!("eyJ{h}.eyJ{p}.{sig}"), sig)),
            (prop::sample::select(vec!["AKIA", "ASIA"]), "[A-Z0-9]{16}")
                .prop_map(|(prefix, m)| (format!("{prefix}{m}"), m)),
            prop::collection::vec("[A-Za-z0-9+/]{64}", 1..4).prop_map(|lines| (
                format!(
                    "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----",
                    lines.join("\n")
                ),
                lines[0].clone()
            )),
            MATERIAL.prop_map(|m| (format!("postgres://app:{m}@db.example:5432/app"), m)),
            (
                prop::sample::select(vec![
                    "token",
                    "key",
                    "secret",
                    "password",
                    "api_key",
                    "access_token",
                    "sig",
                    "client_secret",
                    "X-Amz-Signature",
                ]),
                MATERIAL
            )
                .prop_map(|(name, m)| (
                    format!("https://api.example/cb?state=1&{name}={m}&x=2"),
                    m
                )),
        ]
    }

    /// A secret key name, in any of the spellings clients use.
    fn secret_key() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "clientSecret",
            "accessToken",
            "privateKey",
            "refreshToken",
            "client_secret",
            "CLIENT-SECRET",
            "password",
            "Passwd",
            "pwd",
            "api-key",
            "X_API_KEY",
            "apiKey",
            "Authorization",
            "cookie",
            "set-cookie",
            "jwt",
            "session",
            "signature",
            "credentials",
            "secret",
            "token",
            "idToken",
            "x-auth-token",
        ])
        .prop_map(str::to_owned)
    }

    fn words() -> impl Strategy<Value = String> {
        "[a-z]{3,10}( [a-z]{3,10}){0,3}"
    }

    /// A document with secrets in random places, and their material.
    fn document() -> impl Strategy<Value = (Value, Vec<String>)> {
        let leaf = prop_oneof![
            words().prop_map(|w| (Value::String(w), vec![])),
            any::<i64>().prop_map(|n| (Value::from(n), vec![])),
            secret().prop_map(|(s, m)| (Value::String(s), vec![m])),
            (words(), secret(), words())
                .prop_map(|(a, (s, m), b)| (Value::String(format!("{a} {s} {b}")), vec![m])),
            // Under a secret name, any value goes, shapeless or not.
            (secret_key(), "[a-z]{6}[0-9]{3}[a-z]{6}")
                .prop_map(|(k, m)| (json!({ k: m.clone() }), vec![m])),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(|items| {
                    let (values, secrets): (Vec<Value>, Vec<Vec<String>>) =
                        items.into_iter().unzip();
                    (Value::Array(values), secrets.concat())
                }),
                prop::collection::vec(("[a-z]{1,8}(_[a-z]{1,8})?", inner.clone()), 0..5).prop_map(
                    |entries| {
                        let mut map = serde_json::Map::new();
                        let mut secrets = Vec::new();
                        for (key, (value, found)) in entries {
                            map.insert(key, value);
                            secrets.extend(found);
                        }
                        // A repeated key keeps only its last value; a
                        // secret that went with an earlier one is gone
                        // anyway.
                        (Value::Object(map), secrets)
                    }
                ),
                (secret_key(), inner).prop_map(|(k, (value, found))| (json!({ k: value }), found)),
            ]
        })
    }

    fn leaked<'a>(text: &str, secrets: &'a [String]) -> Option<&'a String> {
        secrets.iter().find(|m| text.contains(m.as_str()))
    }

    proptest! {
        #[test]
        fn no_secret_survives_anywhere_in_details((mut doc, secrets) in document()) {
            Redactor::SECRETS_ONLY.redact(&mut doc);
            let text = doc.to_string();
            prop_assert!(leaked(&text, &secrets).is_none(), "{:?} in {}", leaked(&text, &secrets), text);
            // And a second pass changes nothing.
            let mut again = doc.clone();
            Redactor::SECRETS_ONLY.redact(&mut again);
            prop_assert_eq!(again, doc);
        }

        #[test]
        fn a_sentence_keeps_its_words_and_loses_its_secret(
            before in words(), (secret, material) in secret(), after in words()
        ) {
            let text = format!("{before} {secret} {after}");
            let out = scrubbed(&text);
            prop_assert!(!out.contains(&material), "{}", out);
            prop_assert!(out.contains(REDACTED), "{}", out);
            prop_assert!(out.starts_with(&format!("{before} ")), "{}", out);
            prop_assert!(out.ends_with(&format!(" {after}")), "{}", out);
        }

        #[test]
        fn every_text_field_of_an_event_is_redacted(
            (s1, m1) in secret(), (s2, m2) in secret(), (s3, m3) in secret(),
            (doc, mut secrets) in document(), note in words()
        ) {
            let mut event = AuditEvent::new("op", chrono::Utc::now());
            event.error = Some(format!("{note}: {s1}"));
            event.principal_name = Some(format!("{note} {s2}"));
            event.adapter_id = Some(s3);
            event.details = doc;
            Redactor { max_value_chars: 10_000 }.redact_event(&mut event);
            secrets.extend([m1, m2, m3]);
            let text = serde_json::to_string(&event).unwrap_or_default();
            prop_assert!(leaked(&text, &secrets).is_none(), "{}", text);
        }

        #[test]
        fn key_names_match_the_plain_rule(
            parts in prop::collection::vec(prop::sample::select(vec![
                "api", "Api", "API", "key", "Key", "KEY", "keys", "token", "Token", "secret",
                "Secret", "public", "Public", "session", "Id", "id", "sig", "Sig", "auth",
                "o", "x", "S", "é", "2", "_", "-", ".", " ", "pass", "word", "Word",
                "idempotency", "cookie", "kind", "s",
            ]), 0..6),
            random in "[a-zA-Z0-9_. -]{0,10}",
        ) {
            let key = parts.concat();
            prop_assert_eq!(is_secret_key(&key), reference_is_secret_key(&key), "{:?}", key);
            prop_assert_eq!(is_secret_key(&random), reference_is_secret_key(&random), "{:?}", random);
        }
    }
}
