package dev.faultline.transport;

import java.io.IOException;
import java.io.StringWriter;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFileAttributes;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.GeneralSecurityException;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.SecureRandom;
import java.security.cert.X509Certificate;
import java.security.spec.ECGenParameterSpec;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Date;
import java.util.HexFormat;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.regex.Pattern;
import org.bouncycastle.asn1.x500.X500Name;
import org.bouncycastle.asn1.x500.X500NameBuilder;
import org.bouncycastle.asn1.x500.style.BCStyle;
import org.bouncycastle.asn1.x509.BasicConstraints;
import org.bouncycastle.asn1.x509.ExtendedKeyUsage;
import org.bouncycastle.asn1.x509.Extension;
import org.bouncycastle.asn1.x509.GeneralName;
import org.bouncycastle.asn1.x509.GeneralNames;
import org.bouncycastle.asn1.x509.KeyPurposeId;
import org.bouncycastle.asn1.x509.KeyUsage;
import org.bouncycastle.cert.X509v3CertificateBuilder;
import org.bouncycastle.cert.jcajce.JcaX509CertificateConverter;
import org.bouncycastle.cert.jcajce.JcaX509ExtensionUtils;
import org.bouncycastle.cert.jcajce.JcaX509v3CertificateBuilder;
import org.bouncycastle.openssl.jcajce.JcaPEMWriter;
import org.bouncycastle.openssl.jcajce.JcaPKCS8Generator;
import org.bouncycastle.operator.ContentSigner;
import org.bouncycastle.operator.OperatorCreationException;
import org.bouncycastle.operator.jcajce.JcaContentSignerBuilder;

/**
 * A throwaway CA and one certificate per name, for tests and the demo ({@code faultline tls init}).
 * Keys are EC P-256 (the JDK makes and signs with them; BouncyCastle only builds the certificates
 * and writes the PEM files). Layout:
 * <pre>
 * DIR/ca.pem                       the CA's certificate (for reference)
 * DIR/NAME/{ca.pem,cert.pem,key.pem}   one side's --tls-dir: the CA, its certificate (CN=NAME, DNS SAN NAME), its key
 * </pre>
 * The CA's private key is not kept: nobody can mint another certificate under this CA later (to add a
 * name, make a new set). DIR is made 0700 (or must be an empty directory of this user's), each
 * DIR/NAME 0700, keys 0600, certificates 0644; every file is created with O_EXCL and O_NOFOLLOW.
 */
public final class TlsInit {
    private TlsInit() {}

    /** A name: a directory name and a certificate name at once, so no path tricks and no spaces. */
    private static final Pattern NAME = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._-]{0,63}");
    public static final int MAX_DAYS = 3650;

    /**
     * Makes the CA and one certificate per name in {@code dir}, valid from a minute ago for {@code days}.
     * @return the directories made, one per name (each a --tls-dir)
     * @throws CredentialsException one line: a bad name, a DIR that exists and is not an empty directory of this user's
     */
    public static List<Path> create(Path dir, List<String> names, int days) throws IOException {
        if (days < 1 || days > MAX_DAYS) throw new CredentialsException("--days must be 1 to " + MAX_DAYS + ", got " + days);
        Instant now = Instant.now();
        return create(dir, names, now.minus(Duration.ofMinutes(1)), now.plus(Duration.ofDays(days)));
    }

    /** As {@link #create(Path, List, int)} with the validity given (tests make expired certificates with it). */
    public static List<Path> create(Path dir, List<String> names, Instant notBefore, Instant notAfter) throws IOException {
        List<String> unique = checkNames(names);
        if (!notAfter.isAfter(notBefore)) throw new CredentialsException("a certificate must end after it begins");
        prepareDirectory(dir);
        try {
            KeyPair caKeys = ecKeys();
            X509Certificate ca = caCertificate(caKeys, notBefore, notAfter);
            String caPem = pem(ca);
            SafeFiles.create(dir.resolve(TlsCredentials.CA_FILE), ascii(caPem), "rw-r--r--");
            List<Path> made = new ArrayList<>();
            for (String name : unique) {
                Path side = dir.resolve(name);
                Files.createDirectory(side, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
                KeyPair keys = ecKeys();
                X509Certificate cert = certificate(name, keys, ca, caKeys, notBefore, notAfter);
                SafeFiles.create(side.resolve(TlsCredentials.KEY_FILE), ascii(pem(new JcaPKCS8Generator(keys.getPrivate(), null).generate())), "rw-------");
                SafeFiles.create(side.resolve(TlsCredentials.CERT_FILE), ascii(pem(cert)), "rw-r--r--");
                SafeFiles.create(side.resolve(TlsCredentials.CA_FILE), ascii(caPem), "rw-r--r--");
                made.add(side);
            }
            return made;
        } catch (GeneralSecurityException | OperatorCreationException e) {
            throw new IOException("cannot make the certificates: " + e.getMessage(), e);
        }
    }

    private static List<String> checkNames(List<String> names) throws CredentialsException {
        if (names.isEmpty()) throw new CredentialsException("--names lists nobody: name each side, e.g. --names source,destination");
        LinkedHashSet<String> unique = new LinkedHashSet<>();
        for (String n : names) {
            if (!NAME.matcher(n).matches()) {
                throw new CredentialsException("the name '" + Identities.printable(n) + "' is not 1 to 64 of A-Z a-z 0-9 . _ - starting with a letter or digit");
            }
            if (!unique.add(n)) throw new CredentialsException("the name '" + n + "' is given twice");
            if (n.equals(TlsCredentials.CA_FILE)) throw new CredentialsException("the name '" + n + "' is the CA's file name");
        }
        return new ArrayList<>(unique);
    }

    /** DIR: made 0700, or an empty directory (not a link) of this user's, then set to 0700. */
    private static void prepareDirectory(Path dir) throws IOException {
        PosixFileAttributes a;
        try {
            a = SafeFiles.lstat(dir);
        } catch (CredentialsException missing) {
            Path parent = dir.toAbsolutePath().getParent();
            if (parent != null && !Files.isDirectory(parent)) throw new CredentialsException("the parent directory " + parent + " of " + dir + " does not exist");
            Files.createDirectory(dir, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
            return;
        }
        if (a.isSymbolicLink()) throw new CredentialsException(dir + " is a symbolic link; name a new directory");
        if (!a.isDirectory()) throw new CredentialsException(dir + " exists and is not a directory");
        long owner = SafeFiles.ownerUid(dir), me = SafeFiles.uid();
        if (owner != me) throw new CredentialsException(dir + " is owned by uid " + owner + ", not by this user (uid " + me + ")");
        try (DirectoryStream<Path> entries = Files.newDirectoryStream(dir)) {
            if (entries.iterator().hasNext()) throw new CredentialsException(dir + " is not empty; name a new or empty directory");
        } catch (NoSuchFileException e) {
            throw new CredentialsException(dir + " disappeared");
        }
        Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwx------"));
    }

    private static KeyPair ecKeys() throws GeneralSecurityException {
        KeyPairGenerator g = KeyPairGenerator.getInstance("EC");
        g.initialize(new ECGenParameterSpec("secp256r1"));
        return g.generateKeyPair();
    }

    private static X509Certificate caCertificate(KeyPair keys, Instant notBefore, Instant notAfter)
            throws GeneralSecurityException, OperatorCreationException, IOException {
        byte[] tag = new byte[4];
        new SecureRandom().nextBytes(tag);
        X500Name subject = cn("faultline throwaway CA " + HexFormat.of().formatHex(tag));
        JcaX509ExtensionUtils ext = new JcaX509ExtensionUtils();
        X509v3CertificateBuilder b = new JcaX509v3CertificateBuilder(subject, serial(), Date.from(notBefore), Date.from(notAfter), subject, keys.getPublic())
                .addExtension(Extension.basicConstraints, true, new BasicConstraints(0))
                .addExtension(Extension.keyUsage, true, new KeyUsage(KeyUsage.keyCertSign | KeyUsage.cRLSign))
                .addExtension(Extension.subjectKeyIdentifier, false, ext.createSubjectKeyIdentifier(keys.getPublic()));
        return sign(b, keys);
    }

    private static X509Certificate certificate(String name, KeyPair keys, X509Certificate ca, KeyPair caKeys, Instant notBefore, Instant notAfter)
            throws GeneralSecurityException, OperatorCreationException, IOException {
        JcaX509ExtensionUtils ext = new JcaX509ExtensionUtils();
        X509v3CertificateBuilder b = new JcaX509v3CertificateBuilder(ca, serial(), Date.from(notBefore), Date.from(notAfter), cn(name), keys.getPublic())
                .addExtension(Extension.basicConstraints, true, new BasicConstraints(false))
                .addExtension(Extension.keyUsage, true, new KeyUsage(KeyUsage.digitalSignature))
                // both: a side is the TLS client on one connection and could be the server on another
                .addExtension(Extension.extendedKeyUsage, false, new ExtendedKeyUsage(new KeyPurposeId[] {KeyPurposeId.id_kp_serverAuth, KeyPurposeId.id_kp_clientAuth}))
                .addExtension(Extension.subjectAlternativeName, false, new GeneralNames(new GeneralName(GeneralName.dNSName, name)))
                .addExtension(Extension.subjectKeyIdentifier, false, ext.createSubjectKeyIdentifier(keys.getPublic()))
                .addExtension(Extension.authorityKeyIdentifier, false, ext.createAuthorityKeyIdentifier(ca));
        return sign(b, caKeys);
    }

    private static X509Certificate sign(X509v3CertificateBuilder b, KeyPair signer) throws GeneralSecurityException, OperatorCreationException {
        ContentSigner s = new JcaContentSignerBuilder("SHA256withECDSA").build(signer.getPrivate());
        return new JcaX509CertificateConverter().getCertificate(b.build(s));
    }

    private static X500Name cn(String name) {
        return new X500NameBuilder(BCStyle.INSTANCE).addRDN(BCStyle.CN, name).build();
    }

    private static BigInteger serial() {
        return new BigInteger(127, new SecureRandom()).add(BigInteger.ONE);
    }

    private static String pem(Object o) throws IOException {
        StringWriter s = new StringWriter();
        try (JcaPEMWriter w = new JcaPEMWriter(s)) {
            w.writeObject(o);
        }
        return s.toString();
    }

    private static byte[] ascii(String s) {
        return s.getBytes(StandardCharsets.US_ASCII);
    }
}
