//! The API's OpenAPI 3.1 contract, served at `/api/openapi.json`.
//!
//! It is generated: each handler carries its `#[utoipa::path]` (method, path, parameters, every
//! status it answers with), the router is built from the same annotated handlers (so a route
//! cannot exist without its entry, nor an entry without its route), and the shapes come from
//! `mesh-types` (feature `openapi`), whose tests check them against what serde writes.

use std::borrow::Cow;

use mesh_types::{NetworkStatus, ProviderState, ProviderStatus, ServedPrice};
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, InfoBuilder, LicenseBuilder, OpenApi, RefOr, ResponseBuilder};
use utoipa::{Modify, PartialSchema, ToSchema};

/// Where the contract is served.
pub const OPENAPI_PATH: &str = "/api/openapi.json";

/// The name of the admin token's security scheme.
pub(crate) const ADMIN_TOKEN: &str = "admin_token";

/// The envelope of every error: `{"success": false, "data": null, "error": "…"}`.
pub(crate) struct ErrorEnvelope;

impl PartialSchema for ErrorEnvelope {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("success", ObjectBuilder::new().schema_type(Type::Boolean).enum_values(Some([false])))
            .property("data", ObjectBuilder::new().schema_type(Type::Null))
            .property(
                "error",
                ObjectBuilder::new().schema_type(Type::String).description(Some("What was wrong, and what to do")),
            )
            .required("success")
            .required("data")
            .required("error")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .examples([serde_json::json!({"success": false, "data": null, "error": "Asset 'XYZ' not found in cache"})])
            .into()
    }
}

impl ToSchema for ErrorEnvelope {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Error")
    }
}

/// A named schema for the envelope of each answer: `$name` is `{success, data: $data, error}`.
macro_rules! envelope {
    ($name:ident, $title:literal, $data:expr) => {
        #[doc = concat!("The envelope of a successful answer carrying ", $title, ".")]
        pub(crate) struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                mesh_types::openapi::envelope($data).into()
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

envelope!(ProviderStateResponse, "the provider state", ProviderState::schema());
envelope!(ProviderStatusResponse, "the provider status", ProviderStatus::schema());
envelope!(PricesResponse, "every served price", mesh_types::openapi::served_price_map());
envelope!(PriceResponse, "one served price", ServedPrice::schema());
envelope!(NetworkStatusResponse, "the network status", NetworkStatus::schema());
envelope!(HealthResponse, "the node's liveness", crate::routes::Health::schema());
envelope!(ReadyResponse, "the node's readiness", crate::routes::Ready::schema());

/// The document's title, version and license, and the admin token's scheme.
struct Document;

impl Modify for Document {
    fn modify(&self, openapi: &mut OpenApi) {
        openapi.info = InfoBuilder::new()
            .title("pricemesh node API")
            .version(env!("CARGO_PKG_VERSION"))
            .description(Some(
                "Signed cryptocurrency prices from a peer-to-peer mesh. Every response is the envelope \
                 {success, data, error}; decimals are strings, times RFC 3339. Provider enable and \
                 disable need `Authorization: Bearer <token>` when the node has an admin token.",
            ))
            .license(Some(LicenseBuilder::new().name("MIT OR Apache-2.0").build()))
            .build();
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            ADMIN_TOKEN,
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Fills in what the handlers' annotations do not say.
pub(crate) fn finish(mut openapi: OpenApi) -> OpenApi {
    Document.modify(&mut openapi);
    add_internal_errors(&mut openapi);
    openapi
}

/// Every operation may answer 500 with the envelope: a handler that panics is caught and
/// answered so, which is why the contract lists 500 for every endpoint.
fn add_internal_errors(openapi: &mut OpenApi) {
    let envelope = ContentBuilder::new()
        .schema(Some(ErrorEnvelope::schema()))
        .example(Some(serde_json::json!({"success": false, "data": null, "error": "Internal server error"})))
        .build();
    let internal = ResponseBuilder::new()
        .description("The request failed inside the node (logged); the answer is the envelope")
        .content("application/json", envelope)
        .build();
    for item in openapi.paths.paths.values_mut() {
        for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
            operation.responses.responses.entry("500".to_owned()).or_insert_with(|| internal.clone().into());
        }
    }
}
