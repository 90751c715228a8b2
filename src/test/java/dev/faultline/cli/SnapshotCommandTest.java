package dev.faultline.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.faultline.service.RestoreClient;
import dev.faultline.service.RestoreService;
import dev.faultline.service.ServiceRequest;
import dev.faultline.snapshot.Restore;
import java.nio.file.Files;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;
import org.junit.jupiter.api.io.TempDir;

/** The snapshot and restore commands, through Main.execute, with stdout and stderr captured. */
class SnapshotCommandTest {
    static CliCapture.Outcome run(String... args) {
        return CliCapture.run(args);
    }

    @Test
    void shouldTakeTheSameSnapshotTwiceAtTheSameExitAndRestoreItToTheOriginalEnd(@TempDir Path tmp) throws Exception {
        String[] guest = {"--workload", "phases", "--mem", "8M", "--rounds", "5", "--backend", "ref", "--at-exit", "5", "--json"};
        CliCapture.Outcome a = run(concat(new String[] {"snapshot", "--out", tmp.resolve("a").toString()}, guest));
        CliCapture.Outcome b = run(concat(new String[] {"snapshot", "--out", tmp.resolve("b").toString()}, guest));
        assertEquals(0, a.code(), a.err());
        assertEquals(0, b.code(), b.err());
        JsonNode ja = new ObjectMapper().readTree(a.out()), jb = new ObjectMapper().readTree(b.out());
        assertEquals(ja.at("/snapshot/ram_sha256_at_snapshot"), jb.at("/snapshot/ram_sha256_at_snapshot"), "an exit point is deterministic");
        assertEquals(5, ja.at("/snapshot/guest_exits/0").asInt());
        assertTrue(ja.at("/snapshot/zero_pages").asLong() > ja.at("/snapshot/stored_pages").asLong());

        CliCapture.Outcome r = run("restore", tmp.resolve("a").toString(), "--eager", "--backend", "ref", "--json");
        assertEquals(0, r.code(), r.err() + r.out());
        JsonNode jr = new ObjectMapper().readTree(r.out());
        assertTrue(jr.at("/ok").asBoolean());
        assertEquals(ja.at("/run/ram_sha256").asText(), jr.at("/comparison/ram_sha256").asText());
        assertTrue(jr.at("/comparison/ram_matches").asBoolean());
        assertTrue(jr.at("/timings/to_first_instruction_ms").asDouble() > 0);
        for (String part : new String[] {"describe_ms", "check_ms", "backend_open_ms", "vm_ms", "vcpus_ms", "paging_setup_ms"}) {
            assertTrue(jr.at("/timings/" + part).isNumber(), part + " in " + jr.at("/timings"));
        }

        CliCapture.Outcome text = run("restore", tmp.resolve("a").toString(), "--lazy", "--backend", "ref", "--repeat", "2");
        assertEquals(0, text.code(), text.err() + text.out());
        assertTrue(text.out().startsWith("ok: lazy restore") && text.out().contains("check thread: description"), text.out());
        assertFalse(text.out().contains("null"), "every figure of the text report is filled in: " + text.out());
    }

    @Test
    void shouldRefuseACorruptedSnapshotWithOneLineAndExitCode2(@TempDir Path tmp) throws Exception {
        Path dir = tmp.resolve("s");
        CliCapture.Outcome s = run("snapshot", "--workload", "phases", "--mem", "8M", "--backend", "ref", "--at-exit", "3", "--then", "stop", "--out", dir.toString());
        assertEquals(0, s.code(), s.err());
        assertTrue(s.out().contains("stopped after the snapshot"), s.out());
        Path json = dir.resolve("snapshot.json");
        Files.writeString(json, Files.readString(json).replace("\"version\" : 2,", "\"version\" : 7,"));
        CliCapture.Outcome r = run("restore", dir.toString(), "--eager", "--backend", "ref");
        assertEquals(2, r.code());
        assertEquals("", r.out());
        assertEquals(1, r.err().strip().lines().count(), r.err());
        assertTrue(r.err().startsWith("faultline restore: ") && r.err().contains("format version 7 is not supported"), r.err());
    }

    @Test
    void shouldRestoreLazilyWithTheDeliveryAskedForAndRefuseOnesThatCannotWork(@TempDir Path tmp) throws Exception {
        Path dir = tmp.resolve("s");
        CliCapture.Outcome s = run("snapshot", "--workload", "phases", "--mem", "8M", "--rounds", "3", "--backend", "ref", "--at-exit", "3",
                "--out", dir.toString());
        assertEquals(0, s.code(), s.err());
        CliCapture.Outcome onRef = run("restore", dir.toString(), "--lazy", "--backend", "ref", "--json");
        assertEquals(0, onRef.code(), onRef.err());
        assertEquals("exit", new ObjectMapper().readTree(onRef.out()).at("/delivery").asText(), "ref's own delivery");
        if (dev.faultline.kvm.HostCapabilities.probe().kvmAvailable()) {
            CliCapture.Outcome onKvm = run("restore", dir.toString(), "--lazy", "--backend", "kvm", "--delivery", "exit", "--json");
            assertEquals(0, onKvm.code(), onKvm.err() + onKvm.out());
            JsonNode j = new ObjectMapper().readTree(onKvm.out());
            assertEquals("exit", j.at("/delivery").asText());
            assertTrue(j.at("/comparison/ram_matches").asBoolean(), j.at("/comparison").toString());
        }
        String[][] refused = {
            {"--eager", "--delivery", "exit"},
            {"--lazy", "--delivery", "exit", "--handlers", "2"},
            {"--lazy", "--delivery", "sometimes"},
            {"--lazy", "--delivery", "uffd", "--backend", "ref"},
        };
        for (String[] args : refused) {
            CliCapture.Outcome r = run(concat(new String[] {"restore", dir.toString()}, args));
            assertEquals(2, r.code(), String.join(" ", args) + " -> " + r.err());
            assertEquals(1, r.err().strip().lines().count(), r.err());
            assertTrue(r.err().contains("--delivery"), r.err());
        }
    }

    @Test
    void shouldRefuseASnapshotPointTheGuestNeverReaches(@TempDir Path tmp) {
        CliCapture.Outcome s = run("snapshot", "--workload", "seq-write", "--mem", "8M", "--backend", "ref", "--at-exit", "5", "--out", tmp.resolve("x").toString());
        assertEquals(2, s.code());
        assertTrue(s.err().contains("never reached its snapshot point") && s.err().contains("finished after 1 exits"), s.err());
        assertTrue(!Files.exists(tmp.resolve("x").resolve("snapshot.json")), "nothing written");
    }

    @Test
    void shouldRestoreThroughAServeProcessAsThroughALocalRestore(@TempDir Path tmp) throws Exception {
        Path snap = tmp.resolve("s"), sock = tmp.resolve("rs.sock");
        assertEquals(0, run("snapshot", "--workload", "phases", "--mem", "8M", "--rounds", "5", "--backend", "ref", "--at-exit", "3",
                "--out", snap.toString()).code());
        CliCapture.Outcome local = run("restore", snap.toString(), "--lazy", "--backend", "ref", "--json");
        assertEquals(0, local.code(), local.err());

        CliCapture.Outcome none = run("restore", snap.toString(), "--lazy", "--server", sock.toString());
        assertEquals(2, none.code());
        assertTrue(none.err().contains("no restore service at " + sock) && none.err().contains("faultline serve --socket"), none.err());

        // 'serve' runs as the user would start it, ending after two restores; this thread is its client. It
        // writes to a command line of its own (not the process's stderr), so nothing else waits for it.
        StringWriter serveErr = new StringWriter();
        CommandLine cl = Main.commandLine("serve");
        cl.setErr(new PrintWriter(serveErr, true));
        CompletableFuture<Integer> serve = CompletableFuture.supplyAsync(
                () -> cl.execute("serve", "--socket", sock.toString(), "--backend", "ref", "--warm-up", "1", "--requests", "2"));
        long deadline = System.nanoTime() + 60_000_000_000L;
        while (!Files.exists(sock) && !serve.isDone() && System.nanoTime() < deadline) Thread.sleep(20);
        assertTrue(Files.exists(sock), () -> "the service listens once warmed up; " + serveErr);
        try (RestoreClient c = RestoreClient.connect(sock)) {
            clientOfServe(c, snap, tmp, local);
        } finally {
            // whatever failed above, the service ends
            try (RestoreClient stop = RestoreClient.connect(sock)) {
                if (!serve.isDone()) stop.send("{\"op\": \"stop\"}");
            } catch (RuntimeException endedAlready) {
                // it had ended: nothing to stop
            }
        }
        assertEquals(0, serve.get(60, TimeUnit.SECONDS), serveErr.toString());
        String err = serveErr.toString();
        assertTrue(err.contains("serve: warm-up: restore 1 of 1 (lazy, ref)"), err);
        assertTrue(err.contains("serve: listening on " + sock), err);
        assertTrue(err.contains("serve: refused " + tmp.resolve("none")), err);
        assertTrue(err.contains("serve: restore 2: " + snap + " eager on ref") && err.strip().endsWith("serve: ended"), err);
        assertTrue(!Files.exists(sock), "the socket is removed when the service ends");
        try (var names = Files.list(tmp)) {
            assertTrue(names.noneMatch(n -> n.getFileName().toString().startsWith(".faultline-serve-")), "no temporary socket name is left");
        }
    }

    /** The client's part: a lazy restore equal to the local one, a refusal, an eager restore (the service's last). */
    private static void clientOfServe(RestoreClient c, Path snap, Path tmp, CliCapture.Outcome local) throws Exception {
        Map<String, Object> r = c.send(ServiceRequest.restoreLine(snap, Restore.Mode.LAZY, null, null, "readahead", 1, null, 60));
        JsonNode jl = new ObjectMapper().readTree(local.out()), jr = new ObjectMapper().valueToTree(r);
        assertTrue(jr.at("/ok").asBoolean(), r.toString());
        assertEquals(jl.at("/comparison/ram_sha256"), jr.at("/comparison/ram_sha256"));
        assertEquals(jl.at("/run/vcpus/0/reports"), jr.at("/run/vcpus/0/reports"));
        assertEquals("ref", jr.at("/backend").asText(), "a request that names no backend gets the service's");
        assertTrue(jr.at("/service/request_to_first_instruction_ms").asDouble() > 0);
        Map<String, Object> bad = c.send(ServiceRequest.restoreLine(tmp.resolve("none"), Restore.Mode.EAGER, null, null, "readahead", 1, null, 60));
        assertEquals("refused", bad.get("error_kind"), bad.toString());
        Map<String, Object> last = c.send(ServiceRequest.restoreLine(snap, Restore.Mode.EAGER, null, null, "readahead", 1, null, 60));
        assertEquals(true, last.get("ok"), last.toString());
    }

    @Test
    void shouldSendARestoreToAServiceAndPrintItsReplyAsALocalRestoreWould(@TempDir Path tmp) throws Exception {
        Path snap = tmp.resolve("s"), sock = tmp.resolve("rs.sock");
        assertEquals(0, run("snapshot", "--workload", "phases", "--mem", "8M", "--rounds", "5", "--backend", "ref", "--at-exit", "3",
                "--out", snap.toString()).code());
        try (RestoreService _ = RestoreService.start(new RestoreService.Config(sock, "ref", 0, 0, line -> { }))) {
            CliCapture.Outcome j = run("restore", snap.toString(), "--lazy", "--server", sock.toString(), "--repeat", "2", "--json");
            assertEquals(0, j.code(), j.err());
            JsonNode t = j.json();
            assertTrue(t.at("/ok").asBoolean());
            assertEquals(2, t.at("/service/restores_served").asInt());
            assertEquals(2, t.at("/service/request_to_first_instruction_ms_per_repeat").size());
            assertTrue(t.at("/service/client_round_trip_ms").asDouble() >= t.at("/service/request_to_end_ms").asDouble());

            CliCapture.Outcome text = run("restore", snap.toString(), "--eager", "--server", sock.toString());
            assertEquals(0, text.code(), text.err());
            assertTrue(text.out().startsWith("ok: eager restore of " + snap) && text.out().contains("after the request reached the service at " + sock),
                    text.out());
            assertFalse(text.out().contains("null"), text.out());

            CliCapture.Outcome refused = run("restore", tmp.resolve("none").toString(), "--eager", "--server", sock.toString());
            assertEquals(2, refused.code());
            assertTrue(refused.err().startsWith("faultline restore: the restore service at " + sock + " answered refused: "), refused.err());
        }
    }

    private static String[] concat(String[] a, String[] b) {
        String[] r = new String[a.length + b.length];
        System.arraycopy(a, 0, r, 0, a.length);
        System.arraycopy(b, 0, r, a.length, b.length);
        return r;
    }
}
