package dev.faultline.transport;

import java.security.cert.CertificateException;

/** Thrown by {@link PeerCheck} inside the TLS handshake; its message is the one-line reason the peer is refused. */
final class CertificateRefused extends CertificateException {
    private static final long serialVersionUID = 1L;

    CertificateRefused(String reason, Throwable cause) {
        super(reason, cause);
    }
}
