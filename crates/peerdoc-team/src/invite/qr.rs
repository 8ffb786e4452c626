//! QR renderings of an invite code's text, for a phone camera or another laptop's webcam.
//!
//! The text (`PD-` and uppercase Crockford base32) uses only characters of the QR
//! alphanumeric mode, which keeps the symbol small: version 3 for one IPv4 address.

use qrcode::render::{svg, unicode};
use qrcode::{EcLevel, QrCode};

use super::InviteCode;

impl InviteCode {
    /// The code's text as a QR code in SVG, at least 256 pixels wide, black on white.
    pub fn qr_svg(&self) -> String {
        self.qr()
            .render::<svg::Color<'_>>()
            .min_dimensions(256, 256)
            .quiet_zone(true)
            .build()
    }

    /// The code's text as a QR code in Unicode half blocks (two modules per character),
    /// meant for a terminal with a dark background: light modules are drawn as blocks.
    pub fn qr_terminal(&self) -> String {
        self.qr()
            .render::<unicode::Dense1x2>()
            .dark_color(unicode::Dense1x2::Light)
            .light_color(unicode::Dense1x2::Dark)
            .quiet_zone(true)
            .build()
    }

    fn qr(&self) -> QrCode {
        // The text is at most ~260 alphanumeric characters (six IPv6 addresses), far below
        // what a version-40 symbol holds at level M (3,391), so encoding cannot fail;
        // `largest_code_fits_in_a_qr` checks it.
        QrCode::with_error_correction_level(self.to_string(), EcLevel::M)
            .expect("an invite code always fits in a QR code")
    }
}
