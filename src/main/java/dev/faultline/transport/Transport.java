package dev.faultline.transport;

import java.io.IOException;
import java.nio.channels.SocketChannel;
import java.util.Collection;

/**
 * How the connections of a migration are made and accepted: mutual TLS 1.3 ({@link #tls}) or plain
 * TCP ({@link #insecure}, for loopback). Thread-safe: one transport serves every connection of a
 * process.
 */
public sealed interface Transport permits InsecureTransport, TlsTransport {
    /** Plain TCP: nothing encrypted, nobody authenticated. The CLI allows it only on loopback (--insecure). */
    static Transport insecure() {
        return InsecureTransport.INSTANCE;
    }

    /**
     * Mutual TLS 1.3 with {@code credentials}: this side presents its certificate and requires one
     * from the peer, signed by the same CA, within its validity, and with a name (subject CN or DNS
     * SAN) in {@code allow}, exactly (the side that accepts checks the sources it takes, the side that
     * connects checks the destinations it sends to). The first call in a process runs the JDK's TLS code
     * in memory until the JIT has compiled it (about a second on a quiet host; {@link TlsWarmUp}), so
     * that no migration meets it cold.
     * @throws IllegalArgumentException when {@code allow} is empty or names an empty string
     */
    static Transport tls(TlsCredentials credentials, Collection<String> allow) {
        return new TlsTransport(credentials, allow);
    }

    /**
     * Connects to {@code host:port} and, for TLS, completes the handshake within {@code timeoutMillis}
     * (and the TCP connect within as long again), checking the peer's certificate.
     * @throws PeerRefusedException the peer failed a check (the connection is closed)
     * @throws IOException the peer could not be reached
     */
    Link connect(String host, int port, int timeoutMillis) throws IOException;

    /**
     * Authenticates the peer of a freshly accepted connection: for TLS, runs the handshake to its end
     * within {@code timeoutMillis} and checks the peer's certificate (CA, validity, allow-list) before
     * a byte of its application data is read. The one call an accept loop needs: a raw channel in, an
     * authenticated link out, or a refusal. Never blocks longer than {@code timeoutMillis}, whatever
     * the peer does (stalls, garbage, a plain TCP client, a wrong certificate).
     * @param accepted a connected channel, in either blocking mode; taken over (closed on refusal)
     * @throws PeerRefusedException one line naming the peer and the reason ("no certificate",
     *     "certificate not signed by the CA in DIR/ca.pem", "identity 'mallory' is not in --tls-allow (source)",
     *     "handshake timed out after N ms", "not TLS ..."); the channel is closed
     */
    Link accept(SocketChannel accepted, int timeoutMillis) throws PeerRefusedException;

    /** Whether links are encrypted and peers authenticated. */
    boolean secure();

    /**
     * For reports: "TLS 1.3 as 'destination', accepting source; TLS code warmed up: 23104 records in
     * 1840 ms, compiled" or "plain TCP (insecure)".
     */
    String describe();
}
