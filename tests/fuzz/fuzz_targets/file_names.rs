//! Client file names and stored paths: a sanitised name is one safe path component, and a
//! path the media root accepts stays under it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sea_orm_resumable::{Media, field::sanitize_file_name};
use std::path::{Component, Path};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let name = sanitize_file_name(&text);
    assert!(!name.is_empty());
    assert!(!name.starts_with('.'), "{name:?}");
    assert!(!name.contains(['/', '\\', '\0']), "{name:?}");
    assert!(
        matches!(Path::new(&name).components().next(), Some(Component::Normal(_))),
        "{name:?}"
    );

    let media = Media::new("/srv/media", "/media/").with_private("resumable_chunks");
    if let Ok(path) = media.path(&text) {
        assert!(path.starts_with("/srv/media"), "{text:?} -> {path:?}");
        assert!(
            !path.components().any(|c| matches!(c, Component::ParentDir)),
            "{text:?} -> {path:?}"
        );
        assert!(!media.is_private(&text), "{text:?} is in a private directory");
    }
});
