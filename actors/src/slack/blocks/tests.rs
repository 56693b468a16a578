use chrono::{Duration, TimeZone};

use super::text::{escape_within, humanize};
use super::*;
use crate::notify::NotificationEvent;
use crate::notify::tests::one_of_each;
use crate::slack::route::route;

const BASE: &str = "https://ops.example.com/admin";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0)
        .single()
        .expect("a valid time")
}

/// `len` characters of text that tries every trick: mentions, links,
/// entities, quotes and backslashes (JSON escapes), newlines, multi-byte
/// characters.
fn nasty(len: usize) -> String {
    const SEED: &str =
        "<!channel> & <http://evil|click> \"quoted\" back\\slash\nnew line\ttab ü 🚀 ";
    SEED.chars().cycle().take(len).collect()
}

/// `event` with every free-text field (error, reason, summary, comment,
/// creative ids) set to `text`; `None` for kinds without free text.
fn with_free_text(event: &NotificationEvent, text: &str) -> Option<NotificationEvent> {
    use NotificationEvent as E;
    let mut event = event.clone();
    let t = || text.to_owned();
    match &mut event {
        E::CreativePendingReview { creative_ids, .. } => *creative_ids = vec![t(), t(), t()],
        E::SecurityViolation { reason, .. }
        | E::MediaBuyActivated { reason, .. }
        | E::MediaBuyCompleted { reason, .. }
        | E::WebhookFailing { reason, .. } => *reason = t(),
        E::CreativeReviewed { reason, .. } => *reason = Some(t()),
        E::MediaBuyFailed { error, .. } | E::OperationFailed { error, .. } => *error = t(),
        E::WorkflowApproved { comment, .. } | E::WorkflowRejected { comment, .. } => {
            *comment = Some(t());
        }
        E::AlertFiring { summary, .. } | E::AlertResolved { summary, .. } => *summary = t(),
        E::MediaBuyCreated { .. }
        | E::ApprovalRequired { .. }
        | E::ConfigurationChanged { .. }
        | E::HighValueTransaction { .. }
        | E::MediaBuyUpdated { .. } => return None,
    }
    Some(event)
}

/// `event` with every string in it (ids and names too, lists' items)
/// set to `text`.
fn with_every_string(event: &NotificationEvent, text: &str) -> NotificationEvent {
    fn stretch(value: &mut Value, text: &str) {
        match value {
            Value::String(s) => *s = text.to_owned(),
            Value::Array(items) => items.iter_mut().for_each(|v| stretch(v, text)),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(event).expect("serialise event");
    if let Value::Object(map) = &mut value {
        for (key, field) in map.iter_mut() {
            if key != "kind" {
                stretch(field, text);
            }
        }
    }
    serde_json::from_value(value).expect("deserialise event")
}

fn notification(tenant: Option<&str>, event: NotificationEvent) -> Notification {
    Notification::new(tenant.map(str::to_owned), event, now())
}

fn text_of(value: &Value) -> &str {
    value["text"].as_str().expect("a text")
}

fn blocks(message: &Value) -> &Vec<Value> {
    message["blocks"].as_array().expect("blocks")
}

fn blocks_of_type<'a>(message: &'a Value, kind: &str) -> Vec<&'a Value> {
    blocks(message)
        .iter()
        .filter(|b| b["type"] == kind)
        .collect()
}

fn button(message: &Value) -> Option<&str> {
    blocks_of_type(message, "actions")
        .first()
        .and_then(|b| b["elements"][0]["url"].as_str())
}

/// Asserts every Slack limit this module promises.
fn assert_within_limits(message: &Value, what: &str) {
    let fallback = text_of(message);
    assert!(!fallback.trim().is_empty(), "{what}: empty fallback");
    assert!(
        fallback.chars().count() <= 3_000,
        "{what}: fallback too long"
    );
    let blocks = blocks(message);
    assert!(
        !blocks.is_empty() && blocks.len() <= MAX_BLOCKS,
        "{what}: block count"
    );
    assert_eq!(blocks[0]["type"], "header", "{what}: header first");
    for block in blocks {
        match block["type"].as_str().expect("block type") {
            "header" => {
                let text = text_of(&block["text"]);
                assert!(
                    !text.is_empty() && text.chars().count() <= 150,
                    "{what}: header"
                );
            }
            "section" => {
                if let Some(text) = block.get("text") {
                    let text = text_of(text);
                    assert!(!text.is_empty(), "{what}: empty section");
                    assert!(
                        text.chars().count() <= MAX_SECTION_CHARS,
                        "{what}: section of {} chars",
                        text.chars().count()
                    );
                }
                if let Some(fields) = block.get("fields") {
                    let fields = fields.as_array().expect("fields");
                    assert!(
                        !fields.is_empty() && fields.len() <= 10,
                        "{what}: field count"
                    );
                    for field in fields {
                        let text = text_of(field);
                        assert!(!text.is_empty(), "{what}: empty field");
                        assert!(text.chars().count() <= 2_000, "{what}: field too long");
                    }
                }
            }
            "context" => {
                let elements = block["elements"].as_array().expect("elements");
                assert!(elements.iter().all(|e| !text_of(e).is_empty()), "{what}");
            }
            "actions" => {
                let url = block["elements"][0]["url"].as_str().expect("button url");
                assert!(url.starts_with("https://") && url.chars().count() <= 3_000);
                assert_eq!(block["elements"][0]["text"]["text"], BUTTON_TEXT);
            }
            other => panic!("{what}: unexpected block {other}"),
        }
    }
    let json = serde_json::to_string(message).expect("serialise message");
    assert!(
        json.chars().count() < MAX_MESSAGE_CHARS,
        "{what}: {} chars serialised",
        json.chars().count()
    );
    // Escaping: no mention or link markup survives anywhere.
    assert!(
        !json.contains('<') && !json.contains('>'),
        "{what}: unescaped <>"
    );
}

#[test]
fn every_kind_renders_within_slack_limits() {
    for event in one_of_each() {
        for tenant in [Some("t_acme"), None] {
            for admin in [Some(BASE), None] {
                let n = notification(tenant, event.clone());
                let message = render(&n, admin);
                let what = format!("{} tenant={tenant:?} admin={admin:?}", event.kind());
                assert_within_limits(&message, &what);
                let route = route(&event);
                let header = text_of(&blocks(&message)[0]["text"]);
                assert_eq!(header, format!("{} {}", route.emoji, route.title));
                assert!(
                    text_of(&message).starts_with(&format!("{header}: ")),
                    "{what}"
                );
                assert_eq!(button(&message).is_some(), admin.is_some(), "{what}");
                let fields = blocks(&message)[1]["fields"].to_string();
                assert!(fields.contains("*Severity:*"), "{what}");
                assert_eq!(
                    fields.contains("*Tenant:*\\nt_acme"),
                    tenant.is_some(),
                    "{what}"
                );
            }
        }
    }
}

#[test]
fn huge_free_text_still_makes_a_valid_message() {
    let long = nasty(20_000);
    let mut stretched = 0;
    for event in one_of_each() {
        let Some(event) = with_free_text(&event, &long) else {
            continue;
        };
        stretched += 1;
        for tenant in [Some("t_acme"), None] {
            let message = render(&notification(tenant, event.clone()), Some(BASE));
            let what = format!("{} with 20,000 chars of free text", event.kind());
            assert_within_limits(&message, &what);
            // The details are there, cut, and still say something.
            let details = blocks_of_type(&message, "section")
                .into_iter()
                .filter_map(|b| b.get("text"))
                .map(text_of)
                .next()
                .expect("a details section");
            assert!(details.contains(ELLIPSIS), "{what}: not cut");
            assert!(details.chars().count() > 500, "{what}: cut too much");
            assert!(button(&message).is_some(), "{what}: lost its button");
        }
    }
    assert_eq!(stretched, 12, "kinds with free text");
}

#[test]
fn huge_everything_still_makes_a_valid_message() {
    let long = nasty(20_000);
    for event in one_of_each() {
        let event = with_every_string(&event, &long);
        for tenant in [Some(long.as_str()), Some("t_acme"), None] {
            let message = render(&notification(tenant, event.clone()), Some(BASE));
            assert_within_limits(
                &message,
                &format!("{} with every string huge", event.kind()),
            );
        }
    }
}

#[test]
fn errors_go_in_code_blocks_and_reasons_under_a_label() {
    let events = one_of_each();
    let find = |kind: &str| {
        let event = events.iter().find(|e| e.kind() == kind).expect("sample");
        render(&notification(Some("t_acme"), event.clone()), None)
    };
    let failed = find("media_buy_failed");
    assert_eq!(
        blocks(&failed)[2]["text"]["text"],
        "```the ad server refused the order```"
    );
    assert_eq!(
        text_of(&failed),
        ":x: Media buy failed: Spring launch (mb_1): the ad server refused the order"
    );
    let violation = find("security_violation");
    assert_eq!(
        blocks(&violation)[2]["text"]["text"],
        "*Reason:*\n5 failed authentications in 5 minutes"
    );
    // No free text, no details section.
    let created = find("media_buy_created");
    assert_eq!(blocks_of_type(&created, "section").len(), 1);
    let approved = find("workflow_approved");
    assert_eq!(blocks_of_type(&approved, "section").len(), 1);
}

#[test]
fn facts_are_fields_and_the_context_has_time_and_reference() {
    let event = one_of_each()
        .into_iter()
        .find(|e| e.kind() == "approval_required")
        .expect("sample");
    let n = notification(Some("t_acme"), event);
    let message = render(&n, None);
    let fields: Vec<&str> = blocks(&message)[1]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(text_of)
        .collect();
    for expected in [
        "*Media buy:*\nmb_1",
        "*Workflow:*\nwf_1",
        "*Order:*\nSpring launch",
        "*Principal:*\np_1",
        "*Budget:*\n$50,000.00",
        "*Threshold:*\n$25,000.00",
        "*Tenant:*\nt_acme",
        "*Severity:*\nwarning",
    ] {
        assert!(
            fields.contains(&expected),
            "missing {expected:?} in {fields:?}"
        );
    }
    let context = blocks_of_type(&message, "context")[0]["elements"][0]["text"]
        .as_str()
        .expect("context text");
    assert_eq!(context, format!("2026-11-24 12:00:00 UTC · ref {}", n.id));
}

#[test]
fn user_text_is_escaped_in_mrkdwn() {
    let event = NotificationEvent::MediaBuyFailed {
        media_buy_id: "mb_<1>".into(),
        principal_id: "p_1".into(),
        order_name: "<!channel> & <http://x|y>".into(),
        error: "<!here> broke".into(),
    };
    let message = render(&notification(Some("t_acme"), event), Some(BASE));
    let json = message.to_string();
    assert!(json.contains("&lt;!channel&gt; &amp; &lt;http://x|y&gt;"));
    assert!(json.contains("```&lt;!here&gt; broke```"));
    assert!(!json.contains('<'));
    // Ids in the button URL are percent-encoded instead.
    assert_eq!(
        button(&message),
        Some(&*format!("{BASE}/tenants/t_acme/media-buys/mb_%3C1%3E"))
    );
}

#[test]
fn buttons_lead_to_the_right_page() {
    let events = one_of_each();
    let url = |kind: &str, tenant: Option<&str>, base: &str| {
        let event = events.iter().find(|e| e.kind() == kind).expect("sample");
        let message = render(&notification(tenant, event.clone()), Some(base));
        button(&message).map(str::to_owned)
    };
    let acme = Some("t_acme");
    let expect = |path: &str| Some(format!("{BASE}{path}"));
    assert_eq!(
        url("media_buy_created", acme, BASE),
        expect("/tenants/t_acme/media-buys/mb_1")
    );
    assert_eq!(
        url("high_value_transaction", acme, BASE),
        expect("/tenants/t_acme/media-buys/mb_1")
    );
    assert_eq!(
        url("approval_required", acme, BASE),
        expect("/tenants/t_acme/workflows/wf_1")
    );
    assert_eq!(
        url("workflow_rejected", acme, BASE),
        expect("/tenants/t_acme/workflows/wf_1")
    );
    assert_eq!(
        url("creative_reviewed", acme, BASE),
        expect("/tenants/t_acme/creatives")
    );
    assert_eq!(
        url("configuration_changed", acme, BASE),
        expect("/tenants/t_acme/settings")
    );
    assert_eq!(
        url("webhook_failing", acme, BASE),
        expect("/tenants/t_acme/settings")
    );
    assert_eq!(
        url("security_violation", acme, BASE),
        expect("/tenants/t_acme/security")
    );
    assert_eq!(
        url("alert_firing", acme, BASE),
        expect("/tenants/t_acme/alerts")
    );
    assert_eq!(
        url("operation_failed", acme, BASE),
        expect("/tenants/t_acme/activity")
    );
    // A trailing slash on the base is not doubled.
    assert_eq!(
        url("media_buy_failed", acme, &format!("{BASE}/")),
        expect("/tenants/t_acme/media-buys/mb_1")
    );
    // System events: no tenant part.
    assert_eq!(url("security_violation", None, BASE), expect("/security"));
    assert_eq!(url("alert_resolved", None, BASE), expect("/alerts"));
    assert_eq!(url("webhook_failing", None, BASE), expect("/activity"));
    assert_eq!(url("media_buy_created", None, BASE), expect("/activity"));
    // Not a web address: no button rather than a rejected message.
    assert_eq!(url("media_buy_created", acme, "ops.example.com"), None);
    // Too long for Slack: no button.
    let long_tenant = "t".repeat(3_000);
    assert_eq!(url("media_buy_created", Some(&long_tenant), BASE), None);
}

#[test]
fn amounts_are_formatted_per_currency() {
    assert_eq!(format_amount(10_000.01, "USD"), "$10,000.01");
    assert_eq!(format_amount(1_234.5, "CHF"), "1,234.50 CHF");
    assert_eq!(format_amount(0.0, "EUR"), "€0.00");
    assert_eq!(format_amount(1_234.5, "EUR"), "€1,234.50");
    assert_eq!(format_amount(999.999, "GBP"), "£1,000.00");
    assert_eq!(format_amount(1_234_567.891, "usd"), "$1,234,567.89");
    assert_eq!(format_amount(-1_234.5, "USD"), "-$1,234.50");
    assert_eq!(format_amount(-1_234.5, "CHF"), "-1,234.50 CHF");
    assert_eq!(format_amount(-0.001, "USD"), "$0.00");
    assert_eq!(format_amount(12.0, ""), "12.00");
    assert_eq!(format_amount(100.0, "JPY"), "100.00 JPY");
}

#[test]
fn escape_neutralises_mentions_and_links() {
    assert_eq!(
        escape("<!channel> & <http://x|y>"),
        "&lt;!channel&gt; &amp; &lt;http://x|y&gt;"
    );
    assert_eq!(escape("plain *bold* text"), "plain *bold* text");
    // Cutting escaped text never leaves half an entity.
    assert_eq!(escape_within("a<b", 4), "a…");
    assert_eq!(escape_within("a<b", 5), "a…");
    assert_eq!(escape_within("a<b", 6), "a&lt;b");
    assert_eq!(escape_within("a<bc", 6), "a&lt;…");
}

#[test]
fn truncate_counts_chars_not_bytes() {
    assert_eq!(truncate("héllo", 5), "héllo");
    assert_eq!(truncate("héllo wörld", 5), "héll…");
    assert_eq!(truncate("🚀🚀🚀", 2), "🚀…");
    assert_eq!(truncate("abc", 0), "");
    assert_eq!(truncate("abc", 1), "…");
    assert_eq!(truncate("", 3), "");
}

#[test]
fn windows_read_as_words() {
    assert_eq!(humanize(Duration::seconds(45)), "45 seconds");
    assert_eq!(humanize(Duration::seconds(1)), "1 second");
    assert_eq!(humanize(Duration::seconds(150)), "2 minutes");
    assert_eq!(humanize(Duration::seconds(60)), "1 minute");
    assert_eq!(humanize(Duration::hours(3)), "3 hours");
    assert_eq!(humanize(Duration::days(2)), "2 days");
    assert_eq!(humanize(Duration::seconds(-5)), "0 seconds");
}

/// `events` as notifications for `tenant`, spread evenly over `span`
/// ending at `now()`, oldest first.
fn spread(
    events: Vec<NotificationEvent>,
    tenant: Option<&str>,
    span: Duration,
) -> Vec<Notification> {
    let count = i32::try_from(events.len()).expect("a small test");
    let step = span / count.max(1);
    events
        .into_iter()
        .zip(0..)
        .map(|(event, i)| {
            let mut n = notification(tenant, event);
            n.created_at = now() - span + step * i;
            n
        })
        .collect()
}

#[test]
fn a_digest_of_200_mixed_items_fits() {
    let events: Vec<_> = one_of_each().into_iter().cycle().take(200).collect();
    let items = spread(events, Some("t_acme"), Duration::minutes(2));
    let message = render_digest(&items, now(), Some(BASE));
    assert_within_limits(&message, "digest of 200");
    let header = text_of(&blocks(&message)[0]["text"]);
    assert_eq!(header, ":package: Digest: 200 events");
    assert!(text_of(&message).starts_with("200 events in the last 2 minutes: "));
    assert_eq!(
        button(&message),
        Some(&*format!("{BASE}/tenants/t_acme/activity"))
    );
    let context = blocks_of_type(&message, "context")[0]["elements"][0]["text"]
        .as_str()
        .expect("context text");
    assert_eq!(
        context,
        format!(
            "2026-11-24 11:58:00 UTC – 2026-11-24 11:59:59 UTC · refs {} … {}",
            items[0].id, items[199].id
        )
    );
    // The recent list shows the ten newest, newest first.
    let recent = blocks(&message)[2]["text"]["text"]
        .as_str()
        .expect("recent");
    assert!(recent.starts_with("*Most recent:*\n• `"), "{recent}");
    assert_eq!(recent.matches("\n• ").count(), 10);
    assert!(recent.contains(&format!("`{}`", items[199].event.kind())));
}

#[test]
fn a_digest_counts_by_kind_largest_first() {
    let violation = |subject: &str| NotificationEvent::SecurityViolation {
        violation_type: "token_rejected".into(),
        severity: "high".into(),
        subject: subject.into(),
        reason: "unknown token".into(),
        resource_id: None,
        count: 1,
    };
    let samples = one_of_each();
    let created = samples[0].clone();
    let approval = samples[1].clone();
    let mut events = vec![approval.clone(), approval];
    events.extend(std::iter::repeat_n(created, 5));
    events.extend(std::iter::repeat_n(violation("203.0.113.9"), 30));
    let items = spread(events, Some("t_acme"), Duration::seconds(45));
    let message = render_digest(&items, now(), None);
    assert_within_limits(&message, "digest");
    assert_eq!(
        text_of(&message),
        "37 events in the last 45 seconds: 30 security violations \
         (token_rejected ×30 from 1 subject), 5 media buys created, 2 approvals required"
    );
    assert_eq!(button(&message), None);
    let summary = blocks(&message)[1]["text"]["text"]
        .as_str()
        .expect("summary");
    assert_eq!(
        summary,
        "*37 events in the last 45 seconds*\n• 30 security violations \
         (token_rejected ×30 from 1 subject)\n• 5 media buys created\n• 2 approvals required"
    );

    // Several types and subjects.
    let mut items = spread(
        vec![violation("a"), violation("b"), violation("c")],
        None,
        Duration::hours(3),
    );
    if let NotificationEvent::SecurityViolation { violation_type, .. } = &mut items[2].event {
        *violation_type = "failed_auth_threshold".into();
    }
    let message = render_digest(&items, now(), Some(BASE));
    assert_eq!(
        text_of(&message),
        "3 events in the last 3 hours: 3 security violations \
         (token_rejected ×2, failed_auth_threshold ×1 from 3 subjects)"
    );
    assert_eq!(button(&message), Some(&*format!("{BASE}/activity")));
}

#[test]
fn a_digest_of_mixed_tenants_links_to_the_activity_page() {
    let mut items = spread(one_of_each(), Some("t_acme"), Duration::minutes(1));
    items[3].tenant_id = Some("t_other".into());
    let message = render_digest(&items, now(), Some(&format!("{BASE}/")));
    assert_eq!(button(&message), Some(&*format!("{BASE}/activity")));
}

#[test]
fn a_digest_of_huge_items_fits() {
    let long = nasty(20_000);
    let events: Vec<_> = one_of_each()
        .iter()
        .map(|e| with_every_string(e, &long))
        .cycle()
        .take(200)
        .collect();
    let items = spread(events, Some(&long), Duration::minutes(5));
    let message = render_digest(&items, now(), Some(BASE));
    assert_within_limits(&message, "digest of huge items");
    assert_eq!(
        text_of(&blocks(&message)[0]["text"]),
        ":package: Digest: 200 events"
    );
    assert!(text_of(&message).starts_with("200 events in the last 5 minutes: "));
}

#[test]
fn an_empty_digest_is_still_a_valid_message() {
    let message = render_digest(&[], now(), Some(BASE));
    assert_within_limits(&message, "empty digest");
    assert_eq!(text_of(&message), "0 events in the last 0 seconds");
}
