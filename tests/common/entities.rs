//! Entities of the field tests: the example app's `document`, and `attachment`, whose
//! fields exercise the other options (a computed `upload_to`, a nullable column, its own
//! chunk directory, deleting replaced files).
#![allow(dead_code)]

#[path = "../../examples/upload_server/document.rs"]
pub mod document;

pub mod attachment {
    use sea_orm::entity::prelude::*;
    use sea_orm_resumable::{
        ResumableFileField,
        field::{FileFieldOptions, UploadTo},
    };

    /// Stored under `users/<owner>/`: `upload_to` computed from the model.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct OwnerFile;
    impl FileFieldOptions for OwnerFile {
        const MAX_LENGTH: u32 = 100;
    }
    impl UploadTo<ActiveModel> for OwnerFile {
        fn upload_to(model: &ActiveModel, file_name: &str) -> String {
            match model.owner.try_as_ref() {
                Some(owner) => format!("users/{owner}/{file_name}"),
                None => format!("users/unknown/{file_name}"),
            }
        }
    }

    sea_orm_resumable::file_field! {
        /// Covers: own chunk directory, replaced covers deleted.
        pub struct CoverFile {
            upload_to: "covers",
            chunks_upload_to: "cover_chunks",
            delete_replaced: true,
        }
    }

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "attachment")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub owner: i32,
        pub file: ResumableFileField<OwnerFile>,
        pub cover: Option<ResumableFileField<CoverFile>>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    sea_orm_resumable::file_field_hooks!(file, cover);
}
