package dev.faultline.transport;

import java.net.Socket;
import java.security.Principal;
import java.security.PrivateKey;
import java.security.cert.X509Certificate;
import java.util.Arrays;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.X509ExtendedKeyManager;

/**
 * This side's one certificate and key, offered whatever CAs the peer names (the JDK's key manager
 * would offer nothing to a peer naming another CA, and the peer could then only say "no certificate"
 * where the truth is "not signed by my CA").
 */
final class OwnKey extends X509ExtendedKeyManager {
    private static final String ALIAS = "faultline";

    private final X509Certificate[] chain;
    private final PrivateKey key;

    OwnKey(X509Certificate[] chain, PrivateKey key) {
        this.chain = chain.clone();
        this.key = key;
    }

    /** Our alias if {@code keyType} is our key's type ("EC", "RSA"; TLS 1.3 names RSA-PSS with RSA keys "RSA" too). */
    private String aliasFor(String keyType) {
        return keyType != null && keyType.equalsIgnoreCase(key.getAlgorithm()) ? ALIAS : null;
    }

    private String aliasFor(String[] keyTypes) {
        if (keyTypes == null) return null;
        return Arrays.stream(keyTypes).map(this::aliasFor).filter(a -> a != null).findFirst().orElse(null);
    }

    @Override
    public String chooseEngineClientAlias(String[] keyType, Principal[] issuers, SSLEngine engine) { return aliasFor(keyType); }

    @Override
    public String chooseEngineServerAlias(String keyType, Principal[] issuers, SSLEngine engine) { return aliasFor(keyType); }

    @Override
    public String[] getClientAliases(String keyType, Principal[] issuers) { return aliasFor(keyType) == null ? null : new String[] {ALIAS}; }

    @Override
    public String chooseClientAlias(String[] keyType, Principal[] issuers, Socket socket) { return aliasFor(keyType); }

    @Override
    public String[] getServerAliases(String keyType, Principal[] issuers) { return aliasFor(keyType) == null ? null : new String[] {ALIAS}; }

    @Override
    public String chooseServerAlias(String keyType, Principal[] issuers, Socket socket) { return aliasFor(keyType); }

    @Override
    public X509Certificate[] getCertificateChain(String alias) { return ALIAS.equals(alias) ? chain.clone() : null; }

    @Override
    public PrivateKey getPrivateKey(String alias) { return ALIAS.equals(alias) ? key : null; }
}
