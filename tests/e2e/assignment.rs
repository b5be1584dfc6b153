//! Automatic assignment (round robin, capacity, the waiting queue, reopen)
//! and manual assignment's rules, against the real server.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::faults::line_text;
use crate::inbound::{inbox, Inbox};
use crate::support::{error_code, in_process_on_both_backends, line_signature, App};

const BOT: &str = "Ua3f09c2e71b84d56e0f1a2b3c4d5e6f7";

/// Adds `count` agents; their (id, token).
async fn agents(inbox: &Inbox, count: usize) -> Vec<(String, String)> {
    let mut agents = Vec::new();
    for n in 0..count {
        let added = inbox
            .app
            .graphql(
                &inbox.owner.token,
                "mutation($e: String!) { addMember(email: $e, role: AGENT) { token member { id } } }",
                json!({ "e": format!("agent{n}@example.com") }),
            )
            .await;
        agents.push((
            added["data"]["addMember"]["member"]["id"]
                .as_str()
                .expect("id")
                .to_owned(),
            added["data"]["addMember"]["token"]
                .as_str()
                .expect("token")
                .to_owned(),
        ));
    }
    agents
}

async fn round_robin(inbox: &Inbox, cap: Option<i64>) {
    let answer = inbox
        .app
        .graphql(
            &inbox.owner.token,
            "mutation($c: UUID!, $m: Int) { setAssignmentMode(channelId: $c, mode: ROUND_ROBIN, maxOpenPerAgent: $m) { assignmentMode } }",
            json!({ "c": inbox.line_channel, "m": cap }),
        )
        .await;
    assert_eq!(
        answer["data"]["setAssignmentMode"]["assignmentMode"], "ROUND_ROBIN",
        "{answer}"
    );
}

/// A new customer (number `n`) writes on the LINE channel.
async fn customer_writes(inbox: &Inbox, n: usize, seconds: i64) {
    let body = line_text(
        BOT,
        &format!("U{n:032}"),
        &format!("6{n:08}{seconds}"),
        "hello",
        1_795_400_000_000 + seconds * 1000,
    );
    let status = inbox
        .post_line(&inbox.line_channel, &body, Some(&line_signature(&body)))
        .await;
    assert_eq!(status, 200);
}

async fn set_available(inbox: &Inbox, token: &str, available: bool) {
    let answer = inbox
        .app
        .graphql(
            token,
            "mutation($a: Boolean!) { setAvailability(available: $a) { available } }",
            json!({ "a": available }),
        )
        .await;
    assert!(answer["errors"].is_null(), "{answer}");
}

/// Runs the assignment reactor's passes until it has nothing left to do.
async fn assign(
    inbox: &Inbox,
    assigner: &omnibox_app::reactors::assignment::AutoAssigner,
) -> usize {
    inbox.app.settle().await;
    let mut total = 0;
    loop {
        let n = assigner.run_once(&inbox.app.state).await.expect("pass");
        total += n;
        if n == 0 {
            inbox.app.settle().await;
            return total;
        }
    }
}

/// Automatic assignments in the log: conversation id → (assignee, reason).
async fn automatic(inbox: &Inbox) -> HashMap<String, (String, Value)> {
    inbox
        .app
        .events()
        .await
        .into_iter()
        .filter(|e| e.event_type == "ConversationAssigned")
        .filter_map(|e| {
            let data: Value = serde_json::from_str(&e.data).ok()?;
            data["reason"].is_object().then(|| {
                (
                    data["conversation_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    (
                        data["assignee"].as_str().unwrap_or_default().to_owned(),
                        data["reason"].clone(),
                    ),
                )
            })
        })
        .collect()
}

/// Counts per agent among `assignments`; every available agent's count is
/// within one of the others'.
fn assert_fair(assignments: &[(String, Value)], available: &[&str], phase: &str) {
    let mut counts: HashMap<&str, usize> = available.iter().map(|a| (*a, 0)).collect();
    for (assignee, _) in assignments {
        *counts
            .get_mut(assignee.as_str())
            .unwrap_or_else(|| panic!("{phase}: {assignee} was not available")) += 1;
    }
    let (min, max) = (
        counts.values().min().copied(),
        counts.values().max().copied(),
    );
    assert!(
        max.unwrap_or(0) - min.unwrap_or(0) <= 1,
        "{phase}: {counts:?}"
    );
}

/// 1,000 new conversations and 5 agents, two of whom go away for a while
/// and one of whom leaves later: in each stretch, every available agent's
/// count is within one of the others', and the event says why.
async fn round_robin_is_fair_as_agents_come_and_go(app: App) {
    let inbox = inbox(app, false).await;
    let agents = agents(&inbox, 5).await;
    round_robin(&inbox, None).await;
    let assigner = omnibox_app::reactors::assignment::AutoAssigner::default();
    let ids: Vec<&str> = agents.iter().map(|(id, _)| id.as_str()).collect();
    let mut seen = 0;
    let phases = [
        ((0, 400), ids.clone()),
        ((400, 700), ids[..3].to_vec()),
        ((700, 1000), ids[1..].to_vec()),
    ];
    for (n, ((from, to), available)) in phases.iter().enumerate() {
        match n {
            1 => {
                set_available(&inbox, &agents[3].1, false).await;
                set_available(&inbox, &agents[4].1, false).await;
            }
            2 => {
                set_available(&inbox, &agents[3].1, true).await;
                set_available(&inbox, &agents[4].1, true).await;
                set_available(&inbox, &agents[0].1, false).await;
            }
            _ => {}
        }
        let before: std::collections::HashSet<String> =
            automatic(&inbox).await.into_keys().collect();
        for customer in *from..*to {
            customer_writes(&inbox, customer, customer as i64).await;
        }
        let made = assign(&inbox, &assigner).await;
        assert_eq!(made, to - from, "stretch {n}");
        seen += made;
        let all = automatic(&inbox).await;
        let fresh: Vec<(String, Value)> = all
            .into_iter()
            .filter(|(c, _)| !before.contains(c))
            .map(|(_, v)| v)
            .collect();
        assert_eq!(fresh.len(), to - from);
        assert_fair(&fresh, available, &format!("stretch {n}"));
        let reason = &fresh[0].1;
        assert_eq!(reason["strategy"], "ROUND_ROBIN");
        assert!(
            reason["position"].is_u64() && reason["waited_seconds"].is_i64(),
            "{reason}"
        );
    }
    assert_eq!(seen, 1000);
}

/// With a cap of one open conversation per agent, the rest wait; when an
/// agent resolves one, the oldest waiting conversation goes to them. A
/// resolved, unassigned conversation whose customer writes again is
/// assigned again.
async fn the_cap_queues_the_rest_oldest_first(app: App) {
    let inbox = inbox(app, false).await;
    let agents = agents(&inbox, 2).await;
    round_robin(&inbox, Some(1)).await;
    let assigner = omnibox_app::reactors::assignment::AutoAssigner::default();
    for customer in 0..4 {
        customer_writes(&inbox, customer, 10 + customer as i64).await;
    }
    assert_eq!(
        assign(&inbox, &assigner).await,
        2,
        "one each, the others wait"
    );
    let first = automatic(&inbox).await;
    let (resolved, _) = first
        .iter()
        .find(|(_, (assignee, _))| *assignee == agents[0].0)
        .expect("agent 0 has one");
    let answer = inbox
        .app
        .graphql(
            &agents[0].1,
            "mutation($c: UUID!) { resolveConversation(conversationId: $c) { status } }",
            json!({ "c": resolved }),
        )
        .await;
    assert_eq!(
        answer["data"]["resolveConversation"]["status"], "RESOLVED",
        "{answer}"
    );
    assert_eq!(assign(&inbox, &assigner).await, 1);
    let second = automatic(&inbox).await;
    let (newest, (assignee, reason)) = second
        .iter()
        .find(|(c, _)| !first.contains_key(*c))
        .expect("one more");
    assert_eq!(*assignee, agents[0].0, "the agent below the cap");
    // The oldest of the two waiting (customers 2 and 3) is customer 2's.
    let oldest = inbox
        .app
        .graphql(
            &inbox.owner.token,
            "{ conversations(first: 10) { nodes { id contact { platformUserId } } } }",
            json!({}),
        )
        .await;
    let customer2 = oldest["data"]["conversations"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["contact"]["platformUserId"] == format!("U{:032}", 2))
        .expect("customer 2")["id"]
        .clone();
    assert_eq!(json!(newest), customer2, "oldest first");
    assert!(reason["waited_seconds"].as_i64().is_some());

    // Unassign and resolve, then the customer writes again: assigned again.
    let answer = inbox
        .app
        .graphql(
            &inbox.owner.token,
            "mutation($c: UUID!) { unassignConversation(conversationId: $c) { id } }",
            json!({ "c": newest }),
        )
        .await;
    assert!(answer["errors"].is_null(), "{answer}");
    inbox
        .app
        .graphql(
            &inbox.owner.token,
            "mutation($c: UUID!) { resolveConversation(conversationId: $c) { id } }",
            json!({ "c": newest }),
        )
        .await;
    // That freed agent 0: the last waiting conversation goes to them.
    assert_eq!(assign(&inbox, &assigner).await, 1);
    customer_writes(&inbox, 2, 100).await;
    inbox.app.settle().await;
    let status = inbox
        .app
        .graphql(
            &inbox.owner.token,
            "query($c: UUID!) { conversation(id: $c) { status assignee { id } } }",
            json!({ "c": newest }),
        )
        .await;
    assert_eq!(
        status["data"]["conversation"]["status"], "OPEN",
        "a new message reopens"
    );
    // Both agents are at the cap now: it waits until one frees up.
    assert_eq!(assign(&inbox, &assigner).await, 0);
    let (busy, _) = automatic(&inbox)
        .await
        .into_iter()
        .find(|(c, (assignee, _))| *assignee == agents[1].0 && json!(c) != *newest)
        .expect("agent 1's");
    inbox
        .app
        .graphql(
            &agents[1].1,
            "mutation($c: UUID!) { resolveConversation(conversationId: $c) { id } }",
            json!({ "c": busy }),
        )
        .await;
    assert_eq!(
        assign(&inbox, &assigner).await,
        1,
        "the reopened one is assigned again"
    );
}

/// An AGENT may take an unassigned conversation for itself only; of two
/// assignments that race, one wins and the other answers CONFLICT.
async fn manual_assignment_rules(app: App) {
    let inbox = inbox(app, false).await;
    let agents = agents(&inbox, 2).await;
    let assign = "mutation($c: UUID!, $a: UUID!) { assignConversation(conversationId: $c, agentId: $a) { assignee { id } } }";
    let mut conflicts = 0;
    for trial in 0..20 {
        customer_writes(&inbox, 500 + trial, trial as i64).await;
        inbox.app.settle().await;
        let list = inbox
            .app
            .graphql(
                &inbox.owner.token,
                "{ conversations(first: 50, unassigned: true) { nodes { id } } }",
                json!({}),
            )
            .await;
        let conversation = list["data"]["conversations"]["nodes"][0]["id"].clone();
        if trial == 0 {
            let refused = inbox
                .app
                .graphql(
                    &agents[0].1,
                    assign,
                    json!({ "c": conversation, "a": agents[1].0 }),
                )
                .await;
            assert_eq!(error_code(&refused), Some("FORBIDDEN"), "{refused}");
        }
        let (a, b) = tokio::join!(
            inbox.app.graphql(
                &agents[0].1,
                assign,
                json!({ "c": conversation, "a": agents[0].0 })
            ),
            inbox.app.graphql(
                &agents[1].1,
                assign,
                json!({ "c": conversation, "a": agents[1].0 })
            ),
        );
        let codes = [error_code(&a), error_code(&b)];
        assert!(
            codes.iter().filter(|c| c.is_none()).count() == 1,
            "exactly one agent takes it: {a} {b}"
        );
        assert!(
            codes
                .iter()
                .flatten()
                .all(|c| *c == "CONFLICT" || *c == "FORBIDDEN"),
            "{a} {b}"
        );
        conflicts += codes.iter().filter(|c| **c == Some("CONFLICT")).count();
    }
    assert!(conflicts > 0, "no two assignments ever raced");
}

/// Every conversation's assignee, as the read model shows it.
async fn assignees(inbox: &Inbox) -> Vec<(String, String)> {
    let list = inbox
        .app
        .graphql(
            &inbox.owner.token,
            "{ conversations(first: 200) { nodes { id assignee { id } } } }",
            json!({}),
        )
        .await;
    let mut pairs: Vec<(String, String)> = list["data"]["conversations"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap_or_default().to_owned(),
                n["assignee"]["id"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    pairs.sort();
    pairs
}

/// Automatic assignments are events: rebuilding the read models from zero
/// shows every conversation with the same assignee.
async fn a_rebuild_gives_the_same_assignees(app: App) {
    let inbox = inbox(app, false).await;
    let agents = agents(&inbox, 3).await;
    round_robin(&inbox, Some(4)).await;
    let assigner = omnibox_app::reactors::assignment::AutoAssigner::default();
    set_available(&inbox, &agents[2].1, false).await;
    for customer in 0..12 {
        customer_writes(&inbox, customer, customer as i64).await;
    }
    assign(&inbox, &assigner).await;
    set_available(&inbox, &agents[2].1, true).await;
    for customer in 12..20 {
        customer_writes(&inbox, customer, customer as i64).await;
    }
    assign(&inbox, &assigner).await;
    let before = assignees(&inbox).await;
    assert_eq!(before.len(), 20);
    assert!(
        before.iter().any(|(_, a)| a == "-"),
        "some wait at the cap: {before:?}"
    );
    let output = crate::faults::omnibox(&inbox.app, &["rebuild"]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    inbox.app.settle().await;
    assert_eq!(assignees(&inbox).await, before);
}

/// Reads a PNG QR code as a phone would; the text it holds.
fn read_qr(png_bytes: &[u8]) -> String {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("size")];
    let frame = reader.next_frame(&mut pixels).expect("pixels");
    assert_eq!(frame.color_type, png::ColorType::Grayscale);
    let (width, height) = (frame.width as usize, frame.height as usize);
    let mut image =
        rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| pixels[y * width + x]);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the picture");
    grids[0].decode().expect("readable").1
}

/// QR codes on LINE: the PNG reads as the LINE link that pre-fills the
/// code; a customer who sends the code goes to the code's agent (even with
/// assignment OFF, and overriding round robin), and the code is not shown
/// as what they said; revoked codes assign nobody and lose their image.
/// Facebook channels refuse codes, and agents cannot make them.
async fn qr_codes_assign_line_customers_to_their_agent(app: App) {
    let inbox = inbox(app, false).await;
    let agents = agents(&inbox, 2).await;
    let create = "mutation($c: UUID!, $a: UUID!) { createQrAssignmentCode(channelId: $c, agentId: $a) { id code lineUrl imageUrl revoked agent { id } channel { id kind } } }";
    let channels = inbox
        .app
        .graphql(&inbox.owner.token, "{ channels { id kind } }", json!({}))
        .await;
    let facebook = channels["data"]["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .find(|c| c["kind"] == "FACEBOOK")
        .expect("a Facebook channel")["id"]
        .clone();
    let refused = inbox
        .app
        .graphql(
            &inbox.owner.token,
            create,
            json!({ "c": facebook, "a": agents[1].0 }),
        )
        .await;
    assert_eq!(
        error_code(&refused),
        Some("NOT_SUPPORTED_ON_CHANNEL"),
        "{refused}"
    );
    let refused = inbox
        .app
        .graphql(
            &agents[0].1,
            create,
            json!({ "c": inbox.line_channel, "a": agents[0].0 }),
        )
        .await;
    assert_eq!(error_code(&refused), Some("FORBIDDEN"), "{refused}");

    let created = inbox
        .app
        .graphql(
            &inbox.owner.token,
            create,
            json!({ "c": inbox.line_channel, "a": agents[1].0 }),
        )
        .await;
    let code = &created["data"]["createQrAssignmentCode"];
    assert_eq!(code["agent"]["id"], agents[1].0.as_str(), "{created}");
    assert_eq!(code["channel"]["kind"], "LINE");
    let text = code["code"].as_str().expect("code").to_owned();
    let line_url = code["lineUrl"].as_str().expect("lineUrl").to_owned();
    assert_eq!(
        line_url,
        format!("https://line.me/R/oaMessage/@siamshop/?%23{}", &text[1..]),
        "opens the official account's chat with the code pre-filled"
    );
    let image_url = code["imageUrl"]
        .as_str()
        .expect("imageUrl")
        .replace("https://inbox.example.com", &inbox.app.url);
    let image = reqwest::get(&image_url).await.expect("GET");
    assert_eq!(image.status(), 200);
    assert_eq!(image.headers()["content-type"], "image/png");
    assert_eq!(read_qr(&image.bytes().await.expect("bytes")), line_url);

    // A customer sends the code (assignment is OFF on this channel).
    let body = line_text(
        BOT,
        "Uqrcustomer0000000000000000000001",
        "700000001",
        &text,
        1_795_400_000_000,
    );
    let status = inbox
        .post_line(&inbox.line_channel, &body, Some(&line_signature(&body)))
        .await;
    assert_eq!(status, 200);
    let assigner = omnibox_app::reactors::assignment::AutoAssigner::default();
    assert_eq!(assign(&inbox, &assigner).await, 1);
    let by_code = automatic(&inbox).await;
    let (conversation, (assignee, reason)) = by_code.iter().next().expect("assigned");
    assert_eq!(*assignee, agents[1].0);
    assert_eq!(reason["strategy"], "QR_CODE");
    let shown = inbox
        .app
        .graphql(
            &inbox.owner.token,
            "query($c: UUID!) { conversation(id: $c) { lastMessagePreview assignee { id } } }",
            json!({ "c": conversation }),
        )
        .await;
    let preview = shown["data"]["conversation"]["lastMessagePreview"]
        .as_str()
        .unwrap_or_default();
    assert!(
        !preview.contains(&text),
        "the code is not shown as what the customer said: {preview}"
    );

    // Listed, then revoked: no more image, no more assignment by it.
    let listed = inbox
        .app
        .graphql(
            &inbox.owner.token,
            "{ qrAssignmentCodes { id revoked } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed["data"]["qrAssignmentCodes"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    let revoked = inbox
        .app
        .graphql(
            &inbox.owner.token,
            "mutation($id: UUID!) { revokeQrAssignmentCode(id: $id) { revoked } }",
            json!({ "id": code["id"] }),
        )
        .await;
    assert_eq!(
        revoked["data"]["revokeQrAssignmentCode"]["revoked"], true,
        "{revoked}"
    );
    assert_eq!(reqwest::get(&image_url).await.expect("GET").status(), 404);
    let body = line_text(
        BOT,
        "Uqrcustomer0000000000000000000002",
        "700000002",
        &text,
        1_795_400_001_000,
    );
    let status = inbox
        .post_line(&inbox.line_channel, &body, Some(&line_signature(&body)))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        assign(&inbox, &assigner).await,
        0,
        "a revoked code assigns nobody"
    );
}

/// Subscribers see automatic assignments live, like any other change.
async fn automatic_assignments_are_pushed_live(app: App) {
    use futures_util::StreamExt;
    let inbox = inbox(app, false).await;
    let agents = agents(&inbox, 1).await;
    round_robin(&inbox, None).await;
    customer_writes(&inbox, 900, 1).await;
    inbox.app.settle().await;
    let mut socket = crate::support::subscribe(
        &inbox.app,
        "graphql-transport-ws",
        &inbox.owner.token,
        "subscribe",
        "subscription { inboxUpdates { id assignee { id } } }",
        json!({}),
    )
    .await;
    let assigner = omnibox_app::reactors::assignment::AutoAssigner::default();
    assert_eq!(assign(&inbox, &assigner).await, 1);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("an update in time")
            .expect("open")
            .expect("message");
        let value: Value =
            serde_json::from_str(message.to_text().unwrap_or_default()).unwrap_or(Value::Null);
        if value["payload"]["data"]["inboxUpdates"]["assignee"]["id"] == agents[0].0.as_str() {
            break;
        }
    }
}

in_process_on_both_backends!(
    automatic_assignments_are_pushed_live,
    qr_codes_assign_line_customers_to_their_agent,
    a_rebuild_gives_the_same_assignees,
    round_robin_is_fair_as_agents_come_and_go,
    the_cap_queues_the_rest_oldest_first,
    manual_assignment_rules
);
