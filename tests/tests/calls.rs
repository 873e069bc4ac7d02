//! Calls against real PostgreSQL: numbers an operator assigns and owners configure, and the call
//! lifecycle applied from events in every order, with duplicates and concurrent deliveries.

use parley_tests::TestDb;
use shared::App;
use shared::domain::calls::events::{self, Applied, CallEvent, EventKind, RecordingRef};
use shared::domain::calls::numbers::{Assignment, PhoneNumbers, SettingsPatch};
use shared::domain::calls::{CallStatus, Direction, Provider};
use shared::domain::{Error, UserId};
use time::OffsetDateTime;
use time::macros::datetime;

const NUMBER: &str = "+15550001111";
const CALLER: &str = "+15557654321";

async fn setup() -> (TestDb, App, UserId) {
    let db = TestDb::create().await;
    let app = App::from_settings("calls-test", db.settings(&[]));
    let (user, _) = db.session("owner@example.com", 3600).await;
    let numbers = app.phone_numbers().unwrap();
    numbers
        .assign(&Assignment {
            e164: NUMBER.into(),
            provider: Provider::Telnyx,
            telnyx_connection_id: Some("1494404757140276705".into()),
            signalwire_number_sid: None,
            email: "OWNER@example.com".into(),
        })
        .await
        .unwrap();
    (db, app, UserId::new(user))
}

fn telnyx(kind: EventKind, at: OffsetDateTime) -> CallEvent {
    CallEvent {
        provider: Provider::Telnyx,
        occurred_at: at,
        call_control_id: Some("v3:leg-a".into()),
        call_session_id: Some("session-1".into()),
        call_sid: None,
        call_id: None,
        transfer_leg: false,
        direction: Direction::Inbound,
        from: CALLER.into(),
        to: NUMBER.into(),
        kind,
    }
}

fn lifecycle() -> Vec<CallEvent> {
    vec![
        telnyx(EventKind::Initiated, datetime!(2026-12-05 10:00:00 UTC)),
        telnyx(EventKind::Answered, datetime!(2026-12-05 10:00:03 UTC)),
        telnyx(
            EventKind::Ended {
                status: CallStatus::Completed,
                cause: Some("normal_clearing".into()),
                source: Some("caller".into()),
                duration_seconds: None,
            },
            datetime!(2026-12-05 10:01:03 UTC),
        ),
        telnyx(
            EventKind::RecordingSaved(RecordingRef {
                recording_id: "rec-1".into(),
                url: Some("https://example.com/r.wav".into()),
                duration_seconds: Some(60.0),
            }),
            datetime!(2026-12-05 10:01:04 UTC),
        ),
    ]
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut all = Vec::new();
    for rest in permutations(n - 1) {
        for at in 0..=rest.len() {
            let mut p = rest.clone();
            p.insert(at, n - 1);
            all.push(p);
        }
    }
    all
}

type CallRow = (
    String,
    Option<OffsetDateTime>,
    Option<OffsetDateTime>,
    Option<i32>,
    Option<String>,
    Option<String>,
);

async fn the_call(db: &TestDb) -> CallRow {
    let rows = db
        .client
        .query(
            "SELECT status, answered_at, ended_at, duration_seconds, hangup_cause, call_control_id
               FROM calls",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "exactly one call row");
    let r = &rows[0];
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))
}

#[tokio::test]
async fn every_order_of_a_lifecycle_ends_the_same_way() {
    let (db, app, _owner) = setup().await;
    let orders = permutations(4);
    assert_eq!(orders.len(), 24);
    for order in orders {
        db.client.batch_execute("DELETE FROM calls").await.unwrap();
        let events = lifecycle();
        for &i in &order {
            let applied = events::apply(&app.db, &events[i]).await.unwrap();
            assert!(
                matches!(
                    applied,
                    Applied::Call {
                        other_leg: false,
                        ..
                    }
                ),
                "{order:?}"
            );
        }
        // Duplicates of every event change nothing.
        for e in &events {
            events::apply(&app.db, e).await.unwrap();
        }
        let (status, answered, ended, duration, cause, control) = the_call(&db).await;
        assert_eq!(status, "completed", "order {order:?}");
        assert_eq!(answered, Some(datetime!(2026-12-05 10:00:03 UTC)));
        assert_eq!(ended, Some(datetime!(2026-12-05 10:01:03 UTC)));
        assert_eq!(duration, Some(60), "order {order:?}");
        assert_eq!(cause.as_deref(), Some("normal_clearing"));
        assert_eq!(control.as_deref(), Some("v3:leg-a"));
    }
}

#[tokio::test]
async fn concurrent_deliveries_of_one_call_make_one_row() {
    let (db, app, _owner) = setup().await;
    let events = lifecycle();
    let tasks: Vec<_> = events
        .iter()
        .chain(events.iter())
        .cloned()
        .map(|e| {
            let pool = app.db.clone();
            tokio::spawn(async move { events::apply(&pool, &e).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let (status, ..) = the_call(&db).await;
    assert_eq!(status, "completed");
}

#[tokio::test]
async fn a_terminal_status_is_final_and_other_legs_do_not_move_the_call() {
    let (db, app, _owner) = setup().await;
    let mut events = lifecycle();
    events::apply(&app.db, &events[0]).await.unwrap();
    events::apply(&app.db, &events[1]).await.unwrap();
    // The transferred leg hangs up busy: a new control id in the same session.
    let mut far_end = telnyx(
        EventKind::Ended {
            status: CallStatus::Busy,
            cause: Some("user_busy".into()),
            source: Some("callee".into()),
            duration_seconds: None,
        },
        datetime!(2026-12-05 10:00:30 UTC),
    );
    far_end.call_control_id = Some("v3:leg-b".into());
    let applied = events::apply(&app.db, &far_end).await.unwrap();
    assert!(matches!(
        applied,
        Applied::Call {
            other_leg: true,
            ..
        }
    ));
    assert_eq!(the_call(&db).await.0, "in_progress");
    events::apply(&app.db, &events[2]).await.unwrap();
    // A late "answered" for an ended call changes nothing.
    events[1].occurred_at = datetime!(2026-12-05 10:05:00 UTC);
    events::apply(&app.db, &events[1]).await.unwrap();
    let (status, answered, ..) = the_call(&db).await;
    assert_eq!(status, "completed");
    assert_eq!(answered, Some(datetime!(2026-12-05 10:00:03 UTC)));
}

#[tokio::test]
async fn calls_to_unowned_numbers_are_not_stored() {
    let (db, app, _owner) = setup().await;
    let mut event = lifecycle().remove(0);
    event.to = "+15559999999".into();
    assert_eq!(
        events::apply(&app.db, &event).await.unwrap(),
        Applied::Unowned
    );
    let n: i64 = db
        .client
        .query_one("SELECT count(*) FROM calls", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn owners_change_settings_and_nobody_else_can() {
    let (db, app, owner) = setup().await;
    let numbers: PhoneNumbers = app.phone_numbers().unwrap();
    let page = numbers.list(owner, 20, None).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let number = &page.items[0];
    assert_eq!(number.e164, NUMBER);
    assert!(number.record, "numbers record by default");

    let patch: SettingsPatch = serde_json::from_str(
        r#"{"transcribe": true, "greeting": "Thanks for calling.", "forward_to": "+15552223333"}"#,
    )
    .unwrap();
    let updated = numbers.update(owner, number.id, patch).await.unwrap();
    assert!(updated.transcribe && updated.record);
    assert_eq!(updated.greeting.as_deref(), Some("Thanks for calling."));
    assert_eq!(updated.forward_to.as_deref(), Some("+15552223333"));

    let cleared = numbers
        .update(
            owner,
            number.id,
            serde_json::from_str(r#"{"greeting": null}"#).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(cleared.greeting, None);
    assert_eq!(
        cleared.forward_to.as_deref(),
        Some("+15552223333"),
        "absent fields are kept"
    );

    let loop_back: SettingsPatch =
        serde_json::from_str(&format!(r#"{{"forward_to": "{NUMBER}"}}"#)).unwrap();
    assert!(matches!(
        numbers.update(owner, number.id, loop_back).await,
        Err(Error::Invalid(_))
    ));

    let (stranger, _) = db.session("stranger@example.com", 3600).await;
    let stranger = UserId::new(stranger);
    assert!(
        numbers
            .list(stranger, 20, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let attempt = numbers
        .update(
            stranger,
            number.id,
            serde_json::from_str(r#"{"record": false}"#).unwrap(),
        )
        .await;
    assert!(matches!(attempt, Err(Error::NotFound)));
}

#[tokio::test]
async fn assigning_to_an_unknown_email_fails_and_reassigning_moves_the_number() {
    let (db, app, owner) = setup().await;
    let numbers = app.phone_numbers().unwrap();
    let unknown = numbers
        .assign(&Assignment {
            e164: "+15550002222".into(),
            provider: Provider::Signalwire,
            telnyx_connection_id: None,
            signalwire_number_sid: None,
            email: "nobody@example.com".into(),
        })
        .await;
    assert!(matches!(unknown, Err(Error::Invalid(ref p)) if p[0].field == "email"));
    let (other, _) = db.session("other@example.com", 3600).await;
    numbers
        .assign(&Assignment {
            e164: NUMBER.into(),
            provider: Provider::Telnyx,
            telnyx_connection_id: None,
            signalwire_number_sid: None,
            email: "other@example.com".into(),
        })
        .await
        .unwrap();
    assert!(
        numbers
            .list(owner, 20, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let theirs = numbers.list(UserId::new(other), 20, None).await.unwrap();
    assert_eq!(theirs.items.len(), 1);
    let kept: Option<String> = db
        .client
        .query_one("SELECT telnyx_connection_id FROM phone_numbers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        kept.as_deref(),
        Some("1494404757140276705"),
        "an omitted connection id is kept"
    );
}
