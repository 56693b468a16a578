//! Creative ids (issue 22, item 7): a buyer could learn, or squat on,
//! another buyer's creative ids (409 "used by another principal" against
//! 200). Ids are now each principal's own: a buyer reusing another's id gets
//! a creative of its own, the same answer as for a fresh id, and neither
//! reads nor changes the other's.

use serde_json::{Value, json};

use crate::domain::{As, principal, tenant_with_principal};
use crate::helpers::{Backend, on_both_backends, spawn_app};

on_both_backends!(a_buyer_reusing_anothers_creative_id_gets_its_own_and_learns_nothing);

fn creative(id: &str, url: &str) -> Value {
    json!({"creatives": [{"creative_id": id, "name": "Banner", "format": "display_300x250", "url": url}]})
}

/// `(creative_id, principal_id, status, url)` of every creative `caller` lists.
async fn listed(caller: &As<'_>) -> Vec<(String, String, String, String)> {
    let body = caller
        .expect(200, caller.get("/api/v1/creatives").await)
        .await;
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap().to_owned();
            (s("creative_id"), s("principal_id"), s("status"), s("url"))
        })
        .collect()
}

async fn a_buyer_reusing_anothers_creative_id_gets_its_own_and_learns_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, buyer_a, a_id) = tenant_with_principal(&app, "acme").await;
    let (buyer_b, b_id) = principal(&admin, "Buyer Two").await;
    let a_url = "https://a.example/banner.png";
    let b_url = "https://b.example/banner.png";

    buyer_a
        .expect(
            200,
            buyer_a
                .post("/api/v1/creatives", &creative("c1", a_url))
                .await,
        )
        .await;
    // The admin approves A's.
    admin
        .expect(
            200,
            admin.post("/api/v1/creatives/c1/approve", &json!({})).await,
        )
        .await;

    // B syncs the same id, and a fresh one: the same answer for both.
    let taken = buyer_b
        .expect(
            200,
            buyer_b
                .post("/api/v1/creatives", &creative("c1", b_url))
                .await,
        )
        .await;
    let fresh = buyer_b
        .expect(
            200,
            buyer_b
                .post("/api/v1/creatives", &creative("c2", b_url))
                .await,
        )
        .await;
    for (body, id) in [(&taken, "c1"), (&fresh, "c2")] {
        let c = &body["creatives"][0];
        assert_eq!(c["creative_id"], id, "{body}");
        assert_eq!(c["principal_id"], b_id.as_str(), "{body}");
        assert_eq!(c["status"], "pending_review", "{body}");
        assert_eq!(c["url"], b_url, "{body}");
        assert!(!body.to_string().contains(&a_id), "{body}");
    }

    // A's creative is unchanged: still approved, still its URL; B sees only
    // its own, A only its own.
    let a_sees = listed(&buyer_a).await;
    assert_eq!(
        a_sees,
        [("c1".into(), a_id.clone(), "approved".into(), a_url.into())]
    );
    let b_sees = listed(&buyer_b).await;
    assert_eq!(b_sees.len(), 2, "{b_sees:?}");
    assert!(
        b_sees.iter().all(|c| c.1 == b_id && c.3 == b_url),
        "{b_sees:?}"
    );

    // B syncing "c1" again changes B's, never A's.
    buyer_b
        .expect(
            200,
            buyer_b
                .post("/api/v1/creatives", &creative("c1", b_url))
                .await,
        )
        .await;
    assert_eq!(listed(&buyer_a).await, a_sees);

    // The tenant admin sees both "c1", and pages through them one by one.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/creatives?limit=1&cursor={c}"),
            None => "/api/v1/creatives?limit=1".to_owned(),
        };
        let page = admin.expect(200, admin.get(&path).await).await;
        for c in page["items"].as_array().unwrap() {
            seen.push((
                c["creative_id"].as_str().unwrap().to_owned(),
                c["principal_id"].as_str().unwrap().to_owned(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(seen.len() <= 3, "{seen:?}");
    }
    let mut expected = vec![
        ("c1".to_owned(), a_id.clone()),
        ("c1".to_owned(), b_id.clone()),
    ];
    expected.sort();
    expected.push(("c2".to_owned(), b_id.clone()));
    assert_eq!(seen, expected);

    // Reviewing "c1" now needs the principal: naming none is a 409 (the
    // admin may know both), naming one reviews that one alone.
    let ambiguous = admin.post("/api/v1/creatives/c1/reject", &json!({})).await;
    assert_eq!(ambiguous.status().as_u16(), 409);
    let rejected = admin
        .expect(
            200,
            admin
                .post(
                    &format!("/api/v1/creatives/c1/reject?principal_id={b_id}"),
                    &json!({"reason": "blurry"}),
                )
                .await,
        )
        .await;
    assert_eq!(rejected["principal_id"], b_id.as_str());
    assert_eq!(rejected["status"], "rejected");
    assert_eq!(listed(&buyer_a).await, a_sees, "A's untouched");
    let missing = admin
        .post(
            "/api/v1/creatives/c2/approve?principal_id=prn_0000000000000000",
            &json!({}),
        )
        .await;
    assert_eq!(missing.status().as_u16(), 404);

    // Each buyer's media buy refers to its own "c1".
    for buyer in [&buyer_a, &buyer_b] {
        buyer
            .expect(
                201,
                buyer
                    .post(
                        "/api/v1/media-buys",
                        &crate::domain::media_buy(100.0, &["c1"]),
                    )
                    .await,
            )
            .await;
    }
}
