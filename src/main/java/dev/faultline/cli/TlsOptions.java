package dev.faultline.cli;

import dev.faultline.transport.CredentialsException;
import dev.faultline.transport.TlsCredentials;
import dev.faultline.transport.Transport;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.nio.file.Path;
import java.util.List;
import picocli.CommandLine.Option;

/** How `migrate listen` and `migrate send` secure their connections: --tls-dir and --tls-allow, or --insecure on loopback. */
final class TlsOptions {
    @Option(names = "--tls-dir", paramLabel = "DIR",
            description = "Mutual TLS 1.3 on every connection, with this side's credentials in DIR: ca.pem (the CA, the only one trusted), "
                    + "cert.pem (this side's certificate) and key.pem (its PKCS#8 key, mode 0600, owned by this user). "
                    + "'faultline tls init DIR --names source,destination' makes a set.")
    Path tlsDir;

    @Option(names = "--tls-allow", paramLabel = "NAME", split = ",",
            description = "With --tls-dir: the peer certificate names this side accepts (subject CN or DNS name, exact match); "
                    + "a destination lists its sources, a source the destinations it may send to.")
    List<String> tlsAllow;

    @Option(names = "--insecure",
            description = "Plain TCP: nothing encrypted, nobody authenticated. Only on a loopback address.")
    boolean insecure;

    /**
     * The transport asked for, checked: TLS with loaded credentials, or plain TCP where {@code host}
     * (given as {@code option}, "--bind" or "--to") is a loopback address.
     * @throws UserError one line: neither asked for, both, --insecure off loopback, unusable credentials
     */
    Transport transport(String host, String option) {
        if (insecure && (tlsDir != null || tlsAllow != null)) throw new UserError("--insecure excludes --tls-dir and --tls-allow");
        if (insecure) {
            if (!loopback(host)) {
                throw new UserError("--insecure is refused for " + option + " " + host + ": plain TCP only on a loopback address; "
                        + "use --tls-dir DIR --tls-allow NAME (faultline tls init makes certificates)");
            }
            return Transport.insecure();
        }
        if (tlsDir == null) {
            throw new UserError("needs --tls-dir DIR with --tls-allow NAME,... (make certificates with: faultline tls init certs "
                    + "--names source,destination), or --insecure for plain TCP on loopback");
        }
        if (tlsAllow == null || tlsAllow.isEmpty()) {
            throw new UserError("--tls-dir needs --tls-allow NAME,...: the certificate names of the peers this side accepts");
        }
        try {
            return Transport.tls(TlsCredentials.load(tlsDir), tlsAllow);
        } catch (CredentialsException e) {
            throw new UserError(e.getMessage());
        }
    }

    /** Whether every address {@code host} names is a loopback address (127.0.0.0/8, ::1). */
    static boolean loopback(String host) {
        try {
            InetAddress[] all = InetAddress.getAllByName(host);
            for (InetAddress a : all) if (!a.isLoopbackAddress()) return false;
            return all.length > 0;
        } catch (UnknownHostException e) {
            return false;
        }
    }

    /** The help's footer on setting TLS up. */
    static final String SETUP = "TLS set-up: 'faultline tls init certs --names source,destination' makes a CA and one certificate per name; "
            + "give certs/destination to the destination (migrate listen --tls-dir certs/destination --tls-allow source) and certs/source "
            + "to the source (migrate send --tls-dir certs/source --tls-allow destination). Each side checks the other's certificate "
            + "(signed by the CA, not expired, its name allowed) before it reads a message. See docs/migration.md, Security.";
}
