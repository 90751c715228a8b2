package dev.faultline.cli;

import dev.faultline.transport.CredentialsException;
import dev.faultline.transport.TlsInit;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** `faultline tls init`: certificates for migrations over TLS. */
@Command(name = "tls", header = "TLS credentials for migrations (init).", mixinStandardHelpOptions = true,
        description = {"TLS credentials for 'migrate listen/send' and the demo (docs/migration.md, Security)."},
        subcommands = {TlsCommand.Init.class})
final class TlsCommand implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    @Command(name = "init", header = "Makes a throwaway CA and one certificate and key per name, for tests and the demo.",
            mixinStandardHelpOptions = true,
            description = {"Makes a throwaway CA (EC P-256) and, per name, DIR/NAME/{ca.pem,cert.pem,key.pem}: one side's --tls-dir,",
                    "its certificate named NAME (subject CN and DNS name), for the other side's --tls-allow. DIR is made 0700 (or",
                    "must be an empty directory of this user's), keys 0600; no file is written through an existing file or link.",
                    "The CA's private key is not kept: to add a name, make a new set. For production, use certificates",
                    "from your own CA in the same layout."})
    static final class Init implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "DIR", description = "The directory to make (or an empty one).")
        Path dir;

        @Option(names = "--names", required = true, split = ",", paramLabel = "NAME",
                description = "One certificate per name, e.g. source,destination (letters, digits, . _ -).")
        List<String> names;

        @Option(names = "--days", paramLabel = "N", defaultValue = "30", description = "Days the certificates are valid (1 to 3650). Default: ${DEFAULT-VALUE}.")
        int days;

        @Override
        public Integer call() {
            List<Path> made;
            try {
                made = TlsInit.create(dir, names, days);
            } catch (CredentialsException e) {
                throw new UserError(e.getMessage());
            } catch (IOException e) {
                throw new UserError("cannot make the certificates in " + dir + ": " + e.getMessage());
            }
            System.out.println("made a throwaway CA and " + made.size() + " certificate(s) in " + dir + ", valid " + days + " days (the CA's key was not kept):");
            for (Path p : made) System.out.println("  " + p + "   --tls-dir of '" + p.getFileName() + "' (ca.pem, cert.pem, key.pem)");
            if (names.contains("source") && names.contains("destination")) {
                System.out.println("then: faultline migrate listen --tls-dir " + dir.resolve("destination") + " --tls-allow source ...");
                System.out.println("      faultline migrate send --to HOST:PORT --tls-dir " + dir.resolve("source") + " --tls-allow destination ...");
            }
            return 0;
        }
    }
}
