-- Replies {1} when the repository holds no lock, waiter, dispatch or deadlock record, else {0}
-- (checked after taking it off the index, to put it back if a writer came in between).
if idle() then return { 1 } end
return { 0 }
