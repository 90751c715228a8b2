package dev.faultline.transport;

import java.net.Socket;
import java.security.cert.CertificateException;
import java.security.cert.CertificateExpiredException;
import java.security.cert.CertificateNotYetValidException;
import java.security.cert.X509Certificate;
import java.util.List;
import java.util.Set;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.X509ExtendedTrustManager;

/**
 * The check of a peer's certificate inside the TLS handshake, on either side: a certificate is sent;
 * it is within its validity; it is signed by the CA of this side's credentials (PKIX, the CA the only
 * trust anchor); one of its names (subject CN, DNS SANs) is on the allow-list. A failure throws
 * {@link CertificateRefused} with the one-line reason, which ends the handshake with an alert before
 * any application data is read.
 */
final class PeerCheck extends X509ExtendedTrustManager {
    private final X509ExtendedTrustManager pkix;
    private final Set<String> allowed;
    private final String caFile;
    private final String allowText;

    /**
     * @param pkix    the JDK's PKIX trust manager over a key store holding only the CA
     * @param allowed the names accepted (exact match)
     * @param caFile  where the CA came from, for messages ("certs/destination/ca.pem")
     */
    PeerCheck(X509ExtendedTrustManager pkix, Set<String> allowed, String caFile) {
        this.pkix = pkix;
        this.allowed = Set.copyOf(allowed);
        this.caFile = caFile;
        this.allowText = String.join(",", allowed.stream().sorted().toList());
    }

    /** The name of {@code chain}'s certificate that the allow-list accepts; else throws {@link CertificateRefused}. */
    String identity(X509Certificate[] chain, PkixCheck pkixCheck) throws CertificateRefused {
        if (chain == null || chain.length == 0) throw new CertificateRefused("no certificate", null);
        X509Certificate leaf = chain[0];
        List<String> names = Identities.of(leaf);
        String who = names.isEmpty() ? "'" + Identities.printable(leaf.getSubjectX500Principal().getName()) + "'" : "'" + Identities.printable(names.get(0)) + "'";
        try {
            pkixCheck.check();
        } catch (CertificateException e) {
            try {
                leaf.checkValidity();
            } catch (CertificateExpiredException expired) {
                throw new CertificateRefused("certificate " + who + " expired on " + leaf.getNotAfter().toInstant(), e);
            } catch (CertificateNotYetValidException early) {
                throw new CertificateRefused("certificate " + who + " is not valid before " + leaf.getNotBefore().toInstant(), e);
            }
            throw new CertificateRefused("certificate " + who + " not signed by the CA in " + caFile, e);
        }
        for (String n : names) if (allowed.contains(n)) return n;
        throw new CertificateRefused((names.size() > 1 ? "identities " + Identities.quoted(names) + " are" : "identity " + Identities.quoted(names) + " is")
                + " not in --tls-allow (" + allowText + ")", null);
    }

    /** The PKIX part of a check, which may throw. */
    interface PkixCheck {
        void check() throws CertificateException;
    }

    @Override
    public void checkClientTrusted(X509Certificate[] chain, String authType, SSLEngine engine) throws CertificateException {
        identity(chain, () -> pkix.checkClientTrusted(chain, authType, engine));
    }

    @Override
    public void checkServerTrusted(X509Certificate[] chain, String authType, SSLEngine engine) throws CertificateException {
        identity(chain, () -> pkix.checkServerTrusted(chain, authType, engine));
    }

    @Override
    public void checkClientTrusted(X509Certificate[] chain, String authType, Socket socket) throws CertificateException {
        identity(chain, () -> pkix.checkClientTrusted(chain, authType, socket));
    }

    @Override
    public void checkServerTrusted(X509Certificate[] chain, String authType, Socket socket) throws CertificateException {
        identity(chain, () -> pkix.checkServerTrusted(chain, authType, socket));
    }

    @Override
    public void checkClientTrusted(X509Certificate[] chain, String authType) throws CertificateException {
        identity(chain, () -> pkix.checkClientTrusted(chain, authType));
    }

    @Override
    public void checkServerTrusted(X509Certificate[] chain, String authType) throws CertificateException {
        identity(chain, () -> pkix.checkServerTrusted(chain, authType));
    }

    @Override
    public X509Certificate[] getAcceptedIssuers() { return pkix.getAcceptedIssuers(); }
}
