package dev.faultline.transport;

import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFileAttributes;
import java.nio.file.attribute.PosixFilePermission;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.SecureRandom;
import java.security.Signature;
import java.security.cert.CertPathValidator;
import java.security.cert.CertificateExpiredException;
import java.security.cert.CertificateFactory;
import java.security.cert.CertificateNotYetValidException;
import java.security.cert.PKIXParameters;
import java.security.cert.TrustAnchor;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * One side's TLS credentials, from a directory holding exactly what {@code faultline tls init} makes
 * per name (the layout of QEMU's tls-creds-x509 and cloud-hypervisor's tls_dir):
 * <ul>
 * <li>{@code ca.pem}: the CA that signed both sides' certificates, the only trust anchor (no system CAs);
 * <li>{@code cert.pem}: this side's certificate (then any intermediates), signed by that CA;
 * <li>{@code key.pem}: its private key, unencrypted PKCS#8 (EC P-256, or RSA), owned by this user and
 *     readable by nobody else.
 * </ul>
 * Each file is opened without following a symbolic link, must be a regular file of at most 64 KiB,
 * and is checked before use: certificates parse, ca.pem holds CAs, cert.pem is within its validity
 * and signed by ca.pem, key.pem belongs to cert.pem. Every refusal is one line naming the file.
 */
public final class TlsCredentials {
    public static final String CA_FILE = "ca.pem", CERT_FILE = "cert.pem", KEY_FILE = "key.pem";

    private static final Pattern PEM = Pattern.compile("-----BEGIN ([A-Z0-9 ]+)-----([A-Za-z0-9+/=\\s]*?)-----END \\1-----");

    private final Path dir;
    private final List<X509Certificate> cas;
    private final X509Certificate[] chain;
    private final PrivateKey key;
    private final List<String> names;

    private TlsCredentials(Path dir, List<X509Certificate> cas, X509Certificate[] chain, PrivateKey key) {
        this.dir = dir;
        this.cas = List.copyOf(cas);
        this.chain = chain.clone();
        this.key = key;
        this.names = Identities.of(chain[0]);
    }

    /**
     * Loads and checks {@code dir}/ca.pem, cert.pem and key.pem.
     * @throws CredentialsException one line naming the file that cannot be used and why
     */
    public static TlsCredentials load(Path dir) throws CredentialsException {
        checkDirectory(dir);
        List<X509Certificate> cas = certificates(dir.resolve(CA_FILE));
        for (X509Certificate ca : cas) {
            if (ca.getBasicConstraints() < 0) {
                throw new CredentialsException(dir.resolve(CA_FILE) + " holds a certificate that is not a CA ('" + subject(ca) + "' has no CA:true)");
            }
        }
        Path certFile = dir.resolve(CERT_FILE);
        X509Certificate[] chain = certificates(certFile).toArray(X509Certificate[]::new);
        checkOwnCertificate(certFile, chain, cas, dir.resolve(CA_FILE));
        PrivateKey key = privateKey(dir.resolve(KEY_FILE), chain[0]);
        TlsCredentials c = new TlsCredentials(dir, cas, chain, key);
        if (c.names.isEmpty()) {
            throw new CredentialsException(certFile + " names nobody (no subject CN, no DNS subject alternative name) for the peer's --tls-allow to match");
        }
        return c;
    }

    /** A directory that others may write to could have its files swapped: refused. */
    private static void checkDirectory(Path dir) throws CredentialsException {
        PosixFileAttributes a;
        try {
            a = Files.readAttributes(dir, PosixFileAttributes.class);
        } catch (java.nio.file.NoSuchFileException e) {
            throw new CredentialsException("the TLS directory " + dir + " does not exist (make one with: faultline tls init DIR --names source,destination)");
        } catch (java.io.IOException | UnsupportedOperationException e) {
            throw new CredentialsException("cannot read the attributes of the TLS directory " + dir + ": " + e.getMessage());
        }
        if (!a.isDirectory()) throw new CredentialsException("the TLS directory " + dir + " is not a directory");
        Set<PosixFilePermission> p = a.permissions();
        if (p.contains(PosixFilePermission.GROUP_WRITE) || p.contains(PosixFilePermission.OTHERS_WRITE)) {
            throw new CredentialsException("the TLS directory " + dir + " is writable by group or others (mode " + SafeFiles.mode(p)
                    + "): its files could be replaced; chmod 700 it");
        }
    }

    /** Every CERTIFICATE block of the PEM file {@code f} (at least one; no other kind of block). */
    private static List<X509Certificate> certificates(Path f) throws CredentialsException {
        String text = new String(SafeFiles.read(f, false), StandardCharsets.US_ASCII);
        List<X509Certificate> out = new ArrayList<>();
        Matcher m = PEM.matcher(text);
        while (m.find()) {
            if (!m.group(1).equals("CERTIFICATE")) {
                throw new CredentialsException(f + " holds a '" + m.group(1) + "' block; it may hold only certificates (CERTIFICATE blocks)");
            }
            try {
                byte[] der = Base64.getMimeDecoder().decode(m.group(2));
                out.add((X509Certificate) CertificateFactory.getInstance("X.509").generateCertificate(new ByteArrayInputStream(der)));
            } catch (IllegalArgumentException | GeneralSecurityException e) {
                throw new CredentialsException(f + ": certificate " + (out.size() + 1) + " does not parse as X.509");
            }
            if (out.size() > 16) throw new CredentialsException(f + " holds more than 16 certificates");
        }
        if (out.isEmpty()) throw new CredentialsException(f + " holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
        return out;
    }

    /** This side's certificate: within its validity, and signed by the CA (else the peer would refuse it anyway, less clearly). */
    private static void checkOwnCertificate(Path certFile, X509Certificate[] chain, List<X509Certificate> cas, Path caFile) throws CredentialsException {
        X509Certificate leaf = chain[0];
        try {
            leaf.checkValidity();
        } catch (CertificateExpiredException e) {
            throw new CredentialsException(certFile + " expired on " + leaf.getNotAfter().toInstant() + " (make new ones: faultline tls init)");
        } catch (CertificateNotYetValidException e) {
            throw new CredentialsException(certFile + " is not valid before " + leaf.getNotBefore().toInstant() + " (is this host's clock right?)");
        }
        try {
            Set<TrustAnchor> anchors = new HashSet<>();
            for (X509Certificate ca : cas) anchors.add(new TrustAnchor(ca, null));
            PKIXParameters params = new PKIXParameters(anchors);
            params.setRevocationEnabled(false);
            CertPathValidator.getInstance("PKIX").validate(CertificateFactory.getInstance("X.509").generateCertPath(Arrays.asList(chain)), params);
        } catch (GeneralSecurityException e) {
            throw new CredentialsException(certFile + " is not signed by the CA in " + caFile + " (both must come from the same tls init)");
        }
    }

    /** The one PKCS#8 private key in {@code f}, which must belong to {@code cert}. */
    private static PrivateKey privateKey(Path f, X509Certificate cert) throws CredentialsException {
        String text = new String(SafeFiles.read(f, true), StandardCharsets.US_ASCII);
        Matcher m = PEM.matcher(text);
        if (!m.find()) throw new CredentialsException(f + " holds no PEM private key (-----BEGIN PRIVATE KEY-----)");
        String kind = m.group(1);
        switch (kind) {
            case "PRIVATE KEY" -> { }
            case "EC PRIVATE KEY", "RSA PRIVATE KEY" -> throw new CredentialsException(f + " holds an '" + kind
                    + "' (the older OpenSSL form); convert it to PKCS#8: openssl pkcs8 -topk8 -nocrypt -in OLD -out " + f);
            case "ENCRYPTED PRIVATE KEY" -> throw new CredentialsException(f + " is encrypted; faultline reads an unencrypted PKCS#8 key "
                    + "protected by its file mode (0600)");
            default -> throw new CredentialsException(f + " holds a '" + kind + "' block, not a PRIVATE KEY");
        }
        byte[] der = Base64.getMimeDecoder().decode(m.group(2));
        if (m.find()) throw new CredentialsException(f + " holds more than one PEM block; it must hold only the private key");
        String algorithm = cert.getPublicKey().getAlgorithm();
        PrivateKey key;
        try {
            key = KeyFactory.getInstance(algorithm).generatePrivate(new PKCS8EncodedKeySpec(der));
        } catch (GeneralSecurityException | IllegalArgumentException e) {
            throw new CredentialsException(f + " is not a PKCS#8 " + algorithm + " private key (the key type of " + CERT_FILE + ")");
        } finally {
            Arrays.fill(der, (byte) 0);
        }
        if (!belongsTo(key, cert)) throw new CredentialsException(f + " does not belong to " + CERT_FILE + " (a signature made with it does not verify with the certificate's key)");
        return key;
    }

    private static boolean belongsTo(PrivateKey key, X509Certificate cert) {
        String alg = switch (key.getAlgorithm()) {
            case "EC" -> "SHA256withECDSA";
            case "RSA" -> "SHA256withRSA";
            case "Ed25519", "EdDSA" -> "Ed25519";
            default -> null;
        };
        if (alg == null) return false;
        try {
            byte[] probe = new byte[32];
            new SecureRandom().nextBytes(probe);
            Signature s = Signature.getInstance(alg);
            s.initSign(key);
            s.update(probe);
            byte[] sig = s.sign();
            Signature v = Signature.getInstance(alg);
            v.initVerify(cert.getPublicKey());
            v.update(probe);
            return v.verify(sig);
        } catch (GeneralSecurityException e) {
            return false;
        }
    }

    private static String subject(X509Certificate c) {
        return Identities.printable(c.getSubjectX500Principal().getName());
    }

    /** The directory the credentials came from. */
    public Path dir() { return dir; }

    /** This side's names (its certificate's subject CN, then its DNS SANs): what the peer's --tls-allow must list. */
    public List<String> names() { return names; }

    /** When this side's certificate expires. */
    public java.time.Instant notAfter() { return chain[0].getNotAfter().toInstant(); }

    List<X509Certificate> cas() { return cas; }

    X509Certificate[] chain() { return chain.clone(); }

    PrivateKey key() { return key; }
}
