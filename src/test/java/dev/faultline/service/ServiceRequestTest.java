package dev.faultline.service;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.faultline.paging.Prefetch;
import dev.faultline.snapshot.Restore;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.api.Test;

/** Request lines of the restore service: what they mean, and the one-line refusal of each kind of bad one. */
class ServiceRequestTest {
    @Test
    void shouldReadEveryFieldOfARestoreRequest() {
        ServiceRequest r = ServiceRequest.parse("{\"op\":\"restore\",\"dir\":\"/s/a\",\"mode\":\"lazy\",\"backend\":\"ref\",\"verify\":\"upfront\","
                + "\"prefetch\":\"none\",\"handlers\":3,\"delivery\":\"uffd\",\"timeout_s\":7}", "kvm");
        assertEquals(ServiceRequest.Op.RESTORE, r.op());
        assertEquals(Path.of("/s/a"), r.dir());
        Restore.Options o = r.options();
        assertEquals("ref", o.backend());
        assertEquals(Restore.Mode.LAZY, o.mode());
        assertEquals(Restore.Verify.UPFRONT, o.verify());
        assertEquals(Prefetch.NONE, o.prefetch());
        assertEquals(3, o.handlers());
        assertEquals(Restore.Delivery.UFFD, o.delivery());
        assertEquals(Duration.ofSeconds(7), o.timeout());
    }

    @Test
    void shouldDefaultAsTheRestoreCommandDoesWithTheServicesBackend() {
        ServiceRequest r = ServiceRequest.parse(" {\"dir\": \"/s/a\", \"mode\": \"eager\"} ", "kvm");
        Restore.Options o = r.options();
        assertEquals("kvm", o.backend());
        assertEquals(Restore.Mode.EAGER, o.mode());
        assertEquals(Restore.Verify.UPFRONT, o.verify());
        assertEquals(Prefetch.DEFAULT_READAHEAD, o.prefetch());
        assertEquals(1, o.handlers());
        assertNull(o.delivery(), "the backend's own");
        assertEquals(Duration.ofSeconds(300), o.timeout());
        assertEquals(Restore.Verify.ON_FIRST_TOUCH, ServiceRequest.parse("{\"dir\":\"/s\",\"mode\":\"lazy\"}", "ref").options().verify());
    }

    @Test
    void shouldReadWhatTheClientWrites() {
        String line = ServiceRequest.restoreLine(Path.of("/s/b"), Restore.Mode.LAZY, null, Restore.Verify.UPFRONT, "none", 1, "exit", 9);
        assertTrue(!line.contains("\n"), line);
        ServiceRequest r = ServiceRequest.parse(line, "ref");
        assertEquals(Path.of("/s/b"), r.dir());
        assertEquals("ref", r.options().backend());
        assertEquals(Restore.Verify.UPFRONT, r.options().verify());
        assertEquals(Prefetch.NONE, r.prefetch());
        assertEquals(1, r.options().handlers());
        assertEquals(Restore.Delivery.EXIT, r.options().delivery());
        assertEquals(Duration.ofSeconds(9), r.options().timeout());
    }

    @Test
    void shouldTakeAStatusRequestAlone() {
        ServiceRequest r = ServiceRequest.parse("{\"op\":\"status\"}", "kvm");
        assertEquals(ServiceRequest.Op.STATUS, r.op());
        assertNull(r.dir());
        assertThrows(ServiceRequest.BadRequestException.class, () -> ServiceRequest.parse("{\"op\":\"status\",\"dir\":\"/s\"}", "kvm"));
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', value = {
            "restore /s lazy | not valid JSON",
            "[1, 2] | one JSON object",
            "{\"dir\":\"/s\",\"mode\":\"lazy\",\"prefech\":\"none\"} | unknown field 'prefech'; a request has op, dir, mode",
            "{\"dir\":\"/s\",\"dir\":\"/t\",\"mode\":\"lazy\"} | field dir is given twice",
            "{\"dir\":\"/s\",\"mode\":\"lazy\",\"handlers\":\"2\"} | field handlers must be a whole number, not the string '2'",
            "{\"dir\":\"/s\",\"mode\":\"lazy\",\"handlers\":0} | field handlers must be from 1 to 64, got 0",
            "{\"dir\":\"/s\",\"mode\":\"lazy\",\"timeout_s\":1.5} | field timeout_s must be a string or a whole number, not a fraction",
            "{\"dir\":\"/s\",\"mode\":true} | field mode must be a string or a whole number, not a boolean",
            "{\"dir\":\"/s\",\"mode\":7} | field mode must be a string, not the number 7",
            "{\"dir\":\"snaps/a\",\"mode\":\"lazy\"} | dir 'snaps/a' is relative",
            "{\"mode\":\"lazy\"} | a restore request needs dir",
            "{\"dir\":\"/s\"} | a restore request needs mode, lazy or eager",
            "{\"dir\":\"/s\",\"mode\":\"lazzy\"} | field mode is lazy or eager, not 'lazzy'",
            "{\"dir\":\"/s\",\"mode\":\"lazy\",\"verify\":\"always\"} | field verify is upfront or on-touch, not 'always'",
            "{\"dir\":\"/s\",\"mode\":\"lazy\",\"prefetch\":\"replay\"} | field prefetch is none, readahead or replay:FILE (a working set recorded with --record-working-set), not 'replay'",
            "{\"dir\":\"/s\",\"mode\":\"eager\",\"verify\":\"on-touch\"} | verify on-touch is for lazy restores",
            "{\"dir\":\"/s\",\"mode\":\"lazy\",\"delivery\":\"poll\"} | field delivery is uffd or exit, not 'poll'",
            "{\"dir\":\"/s\",\"mode\":\"eager\",\"delivery\":\"exit\"} | delivery is for lazy restores",
            "{\"dir\":\"/s\",\"mode\":\"lazy\",\"delivery\":\"exit\",\"handlers\":2} | handlers 2 with delivery exit",
            "{\"dir\":\"/s\",\"mode\":\"lazy\",\"record_working_set\":\"ws\"} | record_working_set 'ws' is relative",
            "{\"dir\":\"/s\",\"mode\":\"lazy\",\"record_ms\":5} | record_ms needs record_working_set",
            "{\"dir\":\"/s\",\"mode\":\"lazy\",\"record_working_set\":\"/w\",\"prefetch\":\"readahead\"} | recording a working set needs prefetch none",
            "{\"dir\":\"/s\",\"mode\":\"lazy\",\"prefetch\":\"replay:w\"} | prefetch replay:FILE needs an absolute FILE",
            "{\"dir\":\"/s\",\"mode\":\"lazy\",\"prefetch\":\"replay:/nonexistent/ws\"} | prefetch: working-set file /nonexistent/ws cannot be opened",
            "{\"op\":\"halt\"} | op is restore, status or stop, not 'halt'",
            "{\"op\":\"stop\",\"dir\":\"/s\"} | a stop request has no other fields",
            "{\"dir\":\"/s\",\"mode\":\"lazy\"} {} | more after the request's object (an object)"})
    void shouldRefuseABadRequestNamingWhatIsWrong(String line, String expected) {
        ServiceRequest.BadRequestException e = assertThrows(ServiceRequest.BadRequestException.class, () -> ServiceRequest.parse(line, "kvm"));
        assertTrue(e.getMessage().contains(expected), e.getMessage());
    }
}
