/**
 * Authenticated byte streams for migration connections.
 *
 * <p>A {@link dev.faultline.transport.Link} is one non-blocking byte stream to a peer whose identity is
 * known: over TLS 1.3 with mutual certificate authentication ({@link dev.faultline.transport.Transport#tls}),
 * or plain TCP, unauthenticated, for loopback only ({@link dev.faultline.transport.Transport#insecure}).
 * A {@link dev.faultline.transport.Transport} makes links: {@code connect} on the side that dials,
 * {@code accept} on the side that listens. Either returns a link only after the TLS handshake is
 * complete and the peer's certificate passed every check (signed by the CA of the credentials, within
 * its validity, an identity on the allow-list); a peer that fails is refused with a
 * {@link dev.faultline.transport.PeerRefusedException} whose message is one line naming the peer's
 * address and the reason. No byte of the peer's application data is handed out before that.
 *
 * <p>{@link dev.faultline.transport.TlsCredentials} loads a side's ca.pem, cert.pem and key.pem from a
 * directory (checked: no symbolic links, regular files, bounded sizes, a private key only its owner
 * can read). {@link dev.faultline.transport.TlsInit} makes a throwaway CA and one certificate per name
 * for tests and the demo ({@code faultline tls init}).
 *
 * <p>The framing of migration messages is not here: {@code dev.faultline.migration.Connection} sits on
 * a link.
 */
package dev.faultline.transport;
