//! The example with `--require-login`: sessions (axum-login), per-user upload scopes,
//! documents and media per user, and CSRF tokens on every state-changing request.

mod common;
#[path = "common/example.rs"]
mod example;

use common::*;
use example::*;

const USERS: [&str; 5] = [
    "--require-login",
    "--user",
    "alice:wonder:land",
    "--user",
    "bob:builder",
];

#[tokio::test]
async fn without_a_session_only_the_login_page_answers() {
    let root = tempfile::tempdir().unwrap();
    let media = root.path().join("media");
    let (server, url) = start_with(&media, &USERS);
    let site = Site::new(&url);

    let home = site.get("/").await;
    assert_eq!(home.status(), 303);
    assert_eq!(home.headers()["location"], "/login?next=%2F");
    let page = site.get("/documents/1").await;
    assert_eq!(page.headers()["location"], "/login?next=%2Fdocuments%2F1");
    let post = site.post_document("Sneaky", "x").await;
    assert_eq!(post.status(), 303, "form posts go to the login page too");

    let upload = FileUpload::new(&url, random_bytes(100_000, 1), 50_000);
    let (status, body) = upload.test(1).await;
    assert_eq!((status, body.as_str()), (401, "log in first\n"));
    let sent = upload.send(1).await;
    assert_eq!(sent.status(), 401);
    assert_eq!(site.get("/media/documents/x.bin").await.status(), 401);
    let login_form = site.get("/login").await;
    assert_eq!(login_form.status(), 200);
    let csrf = meta(&login_form.text().await.unwrap(), "csrf-token").unwrap();

    for (name, password, token, status) in [
        ("alice", "wrong", csrf.as_str(), 401),
        ("mallory", "wonder:land", &csrf, 401),
        ("alice", "", &csrf, 401),
        ("alice", "wonder:land", "", 403),
        ("alice", "wonder:land", "forged", 403),
    ] {
        let response = site
            .post(
                "/login",
                &[
                    ("username", name),
                    ("password", password),
                    ("csrf_token", token),
                ],
            )
            .await;
        assert_eq!(
            response.status(),
            status,
            "{name}:{password} with {token:?}"
        );
        let text = response.text().await.unwrap();
        let sentence = match status {
            401 => "Wrong user name or password.",
            _ => "reload the page and try again",
        };
        assert!(text.contains(sentence), "{text}");
    }
    assert_eq!(site.get("/").await.status(), 303, "still logged out");
    let chunk_dir = media.join("resumable_chunks");
    let stored = std::fs::read_dir(&chunk_dir).map_or(0, |d| d.count());
    assert_eq!(stored, 0, "nothing was stored for anonymous requests");

    // After login, `next` is followed only to a path on this site.
    for (next, followed) in [
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("/\t/evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/documents/7", "/documents/7"),
    ] {
        let form = site.get("/login").await.text().await.unwrap();
        let csrf = meta(&form, "csrf-token").unwrap();
        let response = site
            .post(
                "/login",
                &[
                    ("username", "bob"),
                    ("password", "builder"),
                    ("csrf_token", &csrf),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(response.status(), 303, "{next:?}");
        assert_eq!(response.headers()["location"], followed, "{next:?}");
    }
    interrupt(server);
}

#[tokio::test]
async fn each_user_uploads_sees_and_claims_only_their_own_files() {
    let root = tempfile::tempdir().unwrap();
    let media = root.path().join("media");
    let (server, url) = start_with(&media, &USERS);
    let (alice, bob) = (Site::new(&url), Site::new(&url));
    let alice_csrf = alice.log_in("alice", "wonder:land").await;
    let bob_csrf = bob.log_in("bob", "builder").await;

    // Alice uploads; a chunk without her CSRF header is refused and stores nothing.
    let alice_data = random_bytes(600_000, 2);
    let mut upload = FileUpload::new(&url, alice_data.clone(), 200_000);
    upload.http = alice.upload_client("forged");
    let refused = upload.send(1).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(upload.test(1).await.0, 204, "nothing stored");
    upload.http = alice.upload_client(&alice_csrf);
    upload.send_all(vec![2, 3], 2).await;
    let token = upload.send_ok(1).await["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // Bob, with the same identifier: he cannot see her chunks nor claim her token.
    let mut bobs = FileUpload::new(&url, random_bytes(600_000, 3), 200_000);
    bobs.identifier = upload.identifier.clone();
    bobs.http = bob.upload_client(&bob_csrf);
    assert_eq!(bobs.test(1).await.0, 204, "bob does not see alice's chunk");
    let claim = bob
        .post_document_with("Stolen", &token, &[("csrf_token", &bob_csrf)])
        .await;
    assert_eq!(claim.status(), 422, "bob cannot claim alice's upload");
    assert!(claim.text().await.unwrap().contains("not valid"));

    // Alice's form post needs her token.
    for forged in [vec![], vec![("csrf_token", bob_csrf.as_str())]] {
        let refused = alice.post_document_with("Mine", &token, &forged).await;
        assert_eq!(refused.status(), 403, "{forged:?}");
    }
    let created = alice
        .post_document_with("Alice's <doc>", &token, &[("csrf_token", &alice_csrf)])
        .await;
    assert_eq!(created.status(), 303);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let page = alice.get(&location).await.text().await.unwrap();
    let href = element(&page, "file");
    let served = alice.get(&href).await;
    assert_eq!(served.status(), 200);
    assert_eq!(sha256(&served.bytes().await.unwrap()), sha256(&alice_data));

    // Bob sees none of it: not in his list, not her page, not her file.
    let bobs_home = bob.get("/").await.text().await.unwrap();
    assert!(!bobs_home.contains("Alice&#39;s") && !bobs_home.contains(&location));
    assert_eq!(bob.get(&location).await.status(), 404);
    assert_eq!(bob.get(&href).await.status(), 404);

    // His own upload of the same identifier is his, and his document is his.
    bobs.send_all(vec![1, 2, 3], 3).await;
    let bobs_token = bobs.send_ok(3).await["token"].as_str().unwrap().to_owned();
    let created = bob
        .post_document_with("Bob's", &bobs_token, &[("csrf_token", &bob_csrf)])
        .await;
    assert_eq!(created.status(), 303);
    let bobs_page = bob
        .get(created.headers()["location"].to_str().unwrap())
        .await
        .text()
        .await
        .unwrap();
    let bobs_href = element(&bobs_page, "file");
    assert_ne!(bobs_href, href);
    assert_eq!(alice.get(&bobs_href).await.status(), 404);
    let alices_home = alice.get("/").await.text().await.unwrap();
    assert_eq!(alices_home.matches("<li>").count(), 1, "{alices_home}");

    // Logging out needs the token too, and ends the session.
    assert_eq!(alice.post("/logout", &[]).await.status(), 403);
    let out = alice.post("/logout", &[("csrf_token", &alice_csrf)]).await;
    assert_eq!(out.status(), 303);
    assert_eq!(alice.get(&href).await.status(), 401);
    assert_eq!(upload.test(1).await.0, 401, "the old session is gone");
    interrupt(server);
}
