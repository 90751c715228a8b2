package dev.faultline.transport;

import java.security.cert.CertificateParsingException;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import javax.naming.InvalidNameException;
import javax.naming.ldap.LdapName;
import javax.naming.ldap.Rdn;
import javax.security.auth.x500.X500Principal;

/** The identity of a certificate: its subject's common names and its DNS subject alternative names, in that order. */
final class Identities {
    private Identities() {}

    /** Subject alternative name type of a DNS name (RFC 5280). */
    private static final int SAN_DNS = 2;

    /** The names of {@code cert}, without repeats; empty if it has none. */
    static List<String> of(X509Certificate cert) {
        Set<String> names = new LinkedHashSet<>();
        try {
            LdapName dn = new LdapName(cert.getSubjectX500Principal().getName(X500Principal.RFC2253));
            for (Rdn rdn : dn.getRdns()) {
                if (rdn.getType().equalsIgnoreCase("CN") && rdn.getValue() instanceof String s) names.add(s);
            }
        } catch (InvalidNameException e) {
            // a subject the JDK printed but cannot parse back: no common name to offer
        }
        try {
            Collection<List<?>> sans = cert.getSubjectAlternativeNames();
            if (sans != null) {
                for (List<?> san : sans) {
                    if (san.size() >= 2 && san.get(0) instanceof Integer t && t == SAN_DNS && san.get(1) instanceof String s) names.add(s);
                }
            }
        } catch (CertificateParsingException e) {
            // an unreadable extension: only the common names count
        }
        return new ArrayList<>(names);
    }

    /** "'source'" or "'a', 'b'": names quoted for a message (each cut to 64 characters, at most 4). */
    static String quoted(List<String> names) {
        if (names.isEmpty()) return "(none)";
        List<String> q = new ArrayList<>();
        for (String n : names.subList(0, Math.min(4, names.size()))) q.add("'" + printable(n) + "'");
        return String.join(", ", q) + (names.size() > 4 ? " and " + (names.size() - 4) + " more" : "");
    }

    /** {@code s} cut to 64 characters with anything but printable ASCII as '?': a peer's name goes into a log line. */
    static String printable(String s) {
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < s.length() && i < 64; i++) {
            char c = s.charAt(i);
            b.append(c >= 0x20 && c < 0x7f ? c : '?');
        }
        return s.length() > 64 ? b + "..." : b.toString();
    }
}
