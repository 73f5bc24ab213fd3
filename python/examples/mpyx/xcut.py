# mpyx's cross-cut: every stage of one graph writes to a database writer running as another
# graph (here sqlite3, one transaction committed in teardown).
import sqlite3
import tempfile
from pathlib import Path

from parafork.mpyx import EZ, F, Iter


class DBWriter(F):
    def setup(self, path):
        self.conn = sqlite3.connect(path)

    def do(self, query):
        self.conn.execute(*query)

    def teardown(self):
        self.conn.commit()
        self.conn.close()


class Ex_Task1(F):
    def do(self, item):
        self.db.put(("UPDATE stats SET seen = seen + 1 WHERE item = ?", (item,)))
        self.put(item)


class Ex_Task2(F):
    def do(self, item):
        if item % 3 == 0:
            self.db.put(("UPDATE stats SET valid = 1 WHERE item = ?", (item,)))
        self.put(item)


with tempfile.TemporaryDirectory() as d:
    path = str(Path(d) / "stats.db")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE stats (item INTEGER, seen INTEGER, valid INTEGER)")
    conn.executemany("INSERT INTO stats VALUES (?, 0, 0)", [(i,) for i in range(30)])
    conn.commit()

    writer = EZ(DBWriter(path))
    wflow = EZ(Iter(range(30)), Ex_Task1(), Ex_Task2())
    wflow.xcut("db", writer)
    wflow.start()
    wflow.join()

    seen, valid = conn.execute("SELECT SUM(seen), SUM(valid) FROM stats").fetchone()
    assert (seen, valid) == (30, 10), (seen, valid)
    conn.close()
