package dev.faultline.cli;

import dev.faultline.migration.MigrationSource;
import dev.faultline.migration.ProtocolException;
import dev.faultline.transport.Transport;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

@Command(name = "send", header = "The source side of a migration: runs a guest and migrates it to --to.",
        mixinStandardHelpOptions = true,
        description = {"The source: runs a guest, and after --after ms migrates it to the destination at --to (started",
                "with 'migrate listen'): optional pre-copy rounds, then the switch-over and post-copy. Prints the figures",
                "and the verification (transfer digest; with the reference run, the final RAM SHA-256 of both sides). Every",
                "connection is mutual TLS 1.3 (--tls-dir, --tls-allow), or plain TCP to a loopback address with --insecure."},
        footer = {"%n" + TlsOptions.SETUP})
final class MigrateSendCommand implements Callable<Integer> {
    @Mixin
    GuestOptions guest;

    @ArgGroup(exclusive = true, multiplicity = "1")
    GuestOptions.Source source;

    @Option(names = "--to", required = true, paramLabel = "HOST:PORT", description = "The destination.")
    String to;

    @Option(names = "--after", paramLabel = "MS", defaultValue = "200",
            description = "How long the guest runs on the source before the migration starts. Default: ${DEFAULT-VALUE}.")
    long afterMillis;

    @Option(names = "--precopy-rounds", paramLabel = "N", defaultValue = "0",
            description = "Dirty-logged pre-copy rounds before the switch-over (0: pure post-copy). Default: ${DEFAULT-VALUE}.")
    int precopyRounds;

    @Option(names = "--fill", paramLabel = "SIZE", converter = Units.SizeConverter.class, defaultValue = "0",
            description = "Give the guest this much non-zero data (from 4 MiB up) before it starts, so pages carry bytes. Default: ${DEFAULT-VALUE}.")
    long fill;

    @Option(names = "--timeout-ms", paramLabel = "MS", defaultValue = "10000",
            description = "How long the destination may stay silent when an answer is due. Default: ${DEFAULT-VALUE}.")
    int timeoutMillis;

    @Option(names = "--no-reference", description = "Do not finish the source's copy of the guest as a reference run (then only the transfer digest is checked).")
    boolean noReference;

    @Option(names = "--baseline", description = "Also time moving RAM-size bytes over a loopback TCP socket and report the ratio.")
    boolean baseline;

    @Mixin
    PriorityOptions priorities;

    @Mixin
    TlsOptions tls;

    @Option(names = "--push-rate", paramLabel = "SIZE", converter = Units.SizeConverter.class, defaultValue = "0",
            description = "At most SIZE of RAM per second in the background push (e.g. 256M); replies to the destination's faults "
                    + "are never held back. 0: no limit. Default: ${DEFAULT-VALUE}.")
    long pushRate;

    @Option(names = "--json", description = "Print one JSON object on stdout.")
    boolean json;

    @Override
    public Integer call() {
        int colon = to.lastIndexOf(':');
        if (colon <= 0) throw new UserError("--to must be HOST:PORT, got '" + to + "'");
        int port;
        try {
            port = Integer.parseInt(to.substring(colon + 1));
        } catch (NumberFormatException e) {
            throw new UserError("--to must be HOST:PORT with a numeric port, got '" + to + "'");
        }
        if (precopyRounds < 0) throw new UserError("--precopy-rounds must not be negative");
        Transport transport = tls.transport(to.substring(0, colon), "--to");
        MigrationSource.Options mo = new MigrationSource.Options(to.substring(0, colon), port, afterMillis, precopyRounds, timeoutMillis,
                !noReference, SourceSide.seconds(guest.timeoutSeconds), priorities.raise(), pushRate);
        Progress progress = new Progress(json);
        SourceSide.Outcome o;
        try {
            o = SourceSide.run(guest, source, mo, transport, fill, baseline, progress);
        } catch (ProtocolException e) {
            progress.done();
            System.err.println("faultline migrate send: migration failed: " + e.getMessage());
            return 1;
        }
        progress.done();
        if (json) Json.print(System.out, o.summary());
        else Summary.print(System.out, o.summary());
        return o.ok() ? 0 : 1;
    }

    static List<String> problems(Map<String, Object> s) {
        Object p = s.get("problems");
        return p instanceof List<?> l ? l.stream().map(String::valueOf).toList() : List.of();
    }
}
