//! Hostile file names and identifiers, all the way from the chunk area to the final move:
//! every file the upload and the save write stays under the media root, in the chunk
//! directory or under the field's `upload_to`.

mod common;
#[path = "common/db.rs"]
mod db;
#[path = "common/entities.rs"]
mod entities;

use common::{files_under, secret, settings, sha256, sha256_file, upload_direct};
use entities::document;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ActiveModelTrait, ActiveValue::Set};
use sea_orm_resumable::{ResumableFileField, Scope, Uploads};

/// Names a client may send as its file name and identifier.
fn hostile_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "../../../../etc/passwd",
        "/etc/passwd",
        "..\\..\\windows\\system32\\config\\sam",
        "C:\\boot.ini",
        "\\\\server\\share\\x",
        "..",
        ".",
        "...",
        ".htaccess",
        "~/.ssh/authorized_keys",
        "a/../../b",
        "%2e%2e%2fsecret",
        "CON",
        "nul.txt",
        "LPT1.pdf",
        "com9",
        "aux.tar.gz",
        "file\u{202e}gpj.exe",
        "\u{feff}bom.txt",
        "ｆｕｌｌｗｉｄｔｈ／．．／x",
        "名前.pdf",
        "emoji 🎉.png",
        " spaced name .txt ",
        "trailing.dot.",
        "-rf",
        "$(rm -rf ~).sh",
        "`reboot`",
        "<script>alert(1)</script>.html",
        "name\"with'quotes",
        "semi;colon|pipe&amp",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    names.push("x".repeat(250));
    names.push(format!("{}.pdf", "報".repeat(80)));
    names.push(format!("a.{}", "e".repeat(240)));
    names
}

#[tokio::test]
async fn hostile_names_never_reach_outside_the_media_root_or_the_fields_directory() {
    let root = tempfile::tempdir().unwrap();
    let media = root.path().join("media");
    let uploads = Uploads::builder(settings(&media), secret())
        .build()
        .await
        .unwrap();
    let db = db::connect(db::Backend::Sqlite, root.path()).await.unwrap();
    Migrator::up(&db, None).await.unwrap();
    let scope = Scope::new("../../other-user");

    for (i, name) in hostile_names().iter().enumerate() {
        let bytes = format!("file {i}: {name}").into_bytes();
        // The name is the client's file name; upload_direct puts it in the identifier too.
        let token = upload_direct(&uploads, &scope, None, name, &bytes).await;
        let file = ResumableFileField::from_token(&uploads, &scope, token.as_str())
            .await
            .unwrap();
        let saved = document::ActiveModel {
            title: Set(format!("hostile {i}")),
            file: Set(file),
            created_at: Set(chrono::Utc::now()),
            ..Default::default()
        }
        .insert(&db)
        .await
        .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        let path = saved.file.path().unwrap();
        let stored = media.join(path);
        assert_eq!(sha256_file(&stored), sha256(&bytes), "{name:?}");
        let month = chrono::Utc::now().format("documents/%Y/%m/").to_string();
        let file_name = path
            .strip_prefix(&month)
            .unwrap_or_else(|| panic!("{name:?} -> {path}"));
        assert!(
            !file_name.contains('/') && !file_name.starts_with('.'),
            "{name:?} -> {path}"
        );
        assert!(
            file_name.len() <= 255,
            "{name:?} -> {} bytes",
            file_name.len()
        );
        assert!(path.chars().count() <= 255, "fits the column: {path}");
    }

    // Everything written is under the media root: the stored files under documents/, and
    // nothing left in the chunk area.
    let everything = files_under(root.path());
    for file in &everything {
        let file = file.to_string_lossy();
        assert!(
            file.starts_with("media/documents/")
                || file == "test.sqlite"
                || file.starts_with("test.sqlite-"),
            "unexpected file {file}"
        );
    }
    assert_eq!(
        everything
            .iter()
            .filter(|f| f.starts_with("media/documents"))
            .count(),
        hostile_names().len()
    );
}
