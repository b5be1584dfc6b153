//! QR assignment codes (LINE only): creating and revoking them, and their
//! PNG, served publicly by unguessable id (codes are meant to be printed).

use omnibox_domain::ids::{ChannelId, MemberId};
use omnibox_domain::org::{Organization, Role};
use omnibox_domain::qr::{self, QrCode, QrEvent};
use omnibox_domain::ChannelKind;
use rand::RngCore;
use uuid::Uuid;

use crate::auth::Session;
use crate::commands::{execute, load, Actor, CommandError};
use crate::context::AppContext;
use crate::error::AppError;

/// Pixels per QR module, and the quiet zone around the symbol, in modules.
const MODULE_PIXELS: usize = 8;
const QUIET_MODULES: usize = 4;

fn require_manager(session: &Session) -> Result<(), AppError> {
    match session.member.role {
        Role::Owner | Role::PrimaryAdmin | Role::Admin => Ok(()),
        Role::Agent => Err(AppError::Forbidden(
            "only an OWNER, PRIMARY_ADMIN or ADMIN manages QR assignment codes".into(),
        )),
    }
}

/// Creates a code that sends customers of LINE channel `channel_id` to
/// `agent_id`. The link opens the official account's chat with the code
/// pre-filled, so LINE's basic id is asked of LINE now.
pub async fn create(
    app: &AppContext,
    session: &Session,
    channel_id: ChannelId,
    agent_id: MemberId,
) -> Result<QrCode, AppError> {
    require_manager(session)?;
    let org = session.member.org_id;
    let channel = app
        .directory
        .by_id(&*app.store, channel_id)
        .await
        .map_err(AppError::internal)?
        .filter(|c| c.org_id == org)
        .ok_or_else(|| AppError::NotFound("no such channel in your organization".into()))?;
    if channel.kind != ChannelKind::Line {
        return Err(AppError::NotSupportedOnChannel(
            "QR assignment codes exist for LINE channels only: a Facebook customer arriving through a link cannot be told apart".into(),
        ));
    }
    let (organization, _) = load::<Organization>(&*app.store, org.0)
        .await
        .map_err(|e| AppError::internal(format!("{e:?}")))?;
    if organization.member(agent_id).is_none() {
        return Err(AppError::NotFound(
            "no such member in your organization".into(),
        ));
    }
    let token =
        channel.state.access_token.as_ref().ok_or_else(|| {
            AppError::ChannelNotConnected("the channel has no access token".into())
        })?;
    let token = app
        .secrets
        .get(token.id)
        .await
        .map_err(AppError::internal)?;
    let bot = app
        .line
        .bot_info(token.expose())
        .await
        .map_err(|e| crate::services::channels::platform_error("LINE", e))?;
    let basic_id = bot.basic_id.ok_or_else(|| {
        AppError::Validation("LINE did not tell this official account's basic id".into())
    })?;
    let mut random = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut random);
    let code = qr::code_text(&random);
    let code_id = Uuid::new_v4();
    let created = QrEvent::QrCodeCreated {
        code_id,
        org_id: org,
        channel_id,
        agent_id,
        line_url: qr::line_url(&basic_id, &code),
        code,
        by: session.member.id,
        at: app.clock.now(),
    };
    let executed = execute::<QrCode, _>(
        &*app.store,
        code_id,
        &Actor::member(&session.member),
        |_| Ok::<_, std::convert::Infallible>(vec![created.clone()]),
    )
    .await
    .map_err(|e| AppError::internal(format!("{e:?}")))?;
    app.read_your_writes(executed.position).await;
    let mut state = QrCode::default();
    state.evolve(&created);
    Ok(state)
}

/// Revokes a code: customers who send it later are no longer assigned by it.
pub async fn revoke(
    app: &AppContext,
    session: &Session,
    code_id: Uuid,
) -> Result<QrCode, AppError> {
    require_manager(session)?;
    let org = session.member.org_id;
    let now = app.clock.now();
    let by = session.member.id;
    let executed = execute::<QrCode, _>(
        &*app.store,
        code_id,
        &Actor::member(&session.member),
        |code| {
            if code.org_id != Some(org) {
                return Err(AppError::NotFound(
                    "no such QR assignment code in your organization".into(),
                ));
            }
            if code.revoked {
                return Ok(vec![]);
            }
            Ok(vec![QrEvent::QrCodeRevoked {
                code_id,
                org_id: org,
                by,
                at: now,
            }])
        },
    )
    .await
    .map_err(|e| match e {
        CommandError::Rejected(error) => error,
        other => AppError::internal(format!("{other:?}")),
    })?;
    app.read_your_writes(executed.position).await;
    let (code, _) = load::<QrCode>(&*app.store, code_id)
        .await
        .map_err(|e| AppError::internal(format!("{e:?}")))?;
    Ok(code)
}

/// The PNG of `text` as a QR code: black modules on white, with a quiet zone.
pub fn png(text: &str) -> Result<Vec<u8>, AppError> {
    let symbol = qrcode::QrCode::new(text.as_bytes()).map_err(AppError::internal)?;
    let width = symbol.width();
    let colors = symbol.to_colors();
    let side = (width + 2 * QUIET_MODULES) * MODULE_PIXELS;
    let mut pixels = vec![255u8; side * side];
    for (n, color) in colors.iter().enumerate() {
        if *color == qrcode::Color::Dark {
            let (mx, my) = (n % width + QUIET_MODULES, n / width + QUIET_MODULES);
            for y in my * MODULE_PIXELS..(my + 1) * MODULE_PIXELS {
                pixels[y * side + mx * MODULE_PIXELS..y * side + (mx + 1) * MODULE_PIXELS].fill(0);
            }
        }
    }
    let mut bytes = Vec::new();
    {
        let side = u32::try_from(side).map_err(AppError::internal)?;
        let mut encoder = png::Encoder::new(&mut bytes, side, side);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(AppError::internal)?;
        writer
            .write_image_data(&pixels)
            .map_err(AppError::internal)?;
    }
    Ok(bytes)
}
