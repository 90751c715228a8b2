package dev.faultline.transport;

import java.io.IOException;
import java.nio.channels.SocketChannel;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.util.Collection;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import javax.net.ssl.KeyManager;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509ExtendedTrustManager;

/**
 * Mutual TLS 1.3 (only) with one side's credentials: its certificate offered, the peer's required
 * (need client auth on the accepting side), the CA of the credentials the only trust anchor, and the
 * peer's name checked against the allow-list inside the handshake ({@link PeerCheck}). No session
 * resumption is offered (engines are made without a peer host), so every connection is checked in full.
 */
final class TlsTransport implements Transport {
    private static final String[] PROTOCOLS = {"TLSv1.3"};
    /** AES-GCM first (the CPU's AES and carry-less multiply through the JIT's intrinsics), AES-128 before AES-256 (fewer rounds). */
    private static final String[] SUITES = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"};

    private final TlsCredentials credentials;
    private final Set<String> allow;
    private final PeerCheck check;
    private final SSLContext context;

    TlsTransport(TlsCredentials credentials, Collection<String> allow) {
        if (allow.isEmpty()) throw new IllegalArgumentException("--tls-allow names nobody: list the certificate names this side accepts");
        for (String a : allow) {
            if (a == null || a.isBlank()) throw new IllegalArgumentException("--tls-allow has an empty name");
        }
        this.credentials = credentials;
        this.allow = new TreeSet<>(allow);
        this.check = check(credentials, this.allow);
        this.context = context(credentials, check);
        TlsWarmUp.once(this);
    }

    private static PeerCheck check(TlsCredentials credentials, Set<String> allow) {
        return new PeerCheck(pkix(credentials), allow, credentials.dir().resolve(TlsCredentials.CA_FILE).toString());
    }

    private static SSLContext context(TlsCredentials credentials, PeerCheck check) {
        try {
            SSLContext c = SSLContext.getInstance("TLSv1.3");
            c.init(new KeyManager[] {new OwnKey(credentials.chain(), credentials.key())}, new TrustManager[] {check}, null);
            return c;
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("this JDK cannot make a TLS 1.3 context: " + e.getMessage(), e);
        }
    }

    /** Two engines of these credentials talking to each other in memory (each allows this side's own names): for {@link TlsWarmUp}. */
    EnginePair warmUpPair() throws javax.net.ssl.SSLException {
        SSLContext self = context(credentials, check(credentials, new TreeSet<>(credentials.names())));
        return new EnginePair(engine(self, true), engine(self, false));
    }

    /** The JDK's PKIX trust manager with the credentials' CA as the only anchor. */
    private static X509ExtendedTrustManager pkix(TlsCredentials credentials) {
        try {
            KeyStore anchors = KeyStore.getInstance("PKCS12");
            anchors.load(null, null);
            List<java.security.cert.X509Certificate> cas = credentials.cas();
            for (int i = 0; i < cas.size(); i++) anchors.setCertificateEntry("ca-" + i, cas.get(i));
            TrustManagerFactory tmf = TrustManagerFactory.getInstance("PKIX");
            tmf.init(anchors);
            for (TrustManager tm : tmf.getTrustManagers()) {
                if (tm instanceof X509ExtendedTrustManager x) return x;
            }
            throw new IllegalStateException("this JDK's PKIX trust manager factory made no X509ExtendedTrustManager");
        } catch (GeneralSecurityException | IOException e) {
            throw new IllegalStateException("cannot make a trust store of the CA: " + e.getMessage(), e);
        }
    }

    /** A new engine of this transport, set up for the client (connecting) or server (accepting) side. */
    SSLEngine engine(boolean client) {
        return engine(context, client);
    }

    private static SSLEngine engine(SSLContext context, boolean client) {
        SSLEngine e = context.createSSLEngine();
        e.setUseClientMode(client);
        SSLParameters p = e.getSSLParameters();
        p.setProtocols(PROTOCOLS);
        p.setCipherSuites(SUITES);
        p.setUseCipherSuitesOrder(true);
        if (!client) p.setNeedClientAuth(true);
        p.setEndpointIdentificationAlgorithm(null); // the peer's name is checked against the allow-list instead
        e.setSSLParameters(p);
        return e;
    }

    @Override
    public Link connect(String host, int port, int timeoutMillis) throws IOException {
        TlsLink link = new TlsLink(InsecureTransport.open(host, port, timeoutMillis), engine(true));
        link.handshake(timeoutMillis, check);
        return link;
    }

    @Override
    public Link accept(SocketChannel accepted, int timeoutMillis) throws PeerRefusedException {
        String peer = ChannelLink.address(accepted);
        TlsLink link;
        try {
            link = new TlsLink(accepted, engine(false));
        } catch (IOException e) {
            throw new PeerRefusedException(peer, "the connection failed: " + e.getMessage(), e);
        }
        link.handshake(timeoutMillis, check);
        return link;
    }

    @Override
    public boolean secure() { return true; }

    @Override
    public String describe() {
        return "TLS 1.3 as " + Identities.quoted(credentials.names()) + ", accepting " + String.join(",", allow) + "; TLS code warmed up: "
                + TlsWarmUp.state();
    }
}
