"""The words of the built-in world: relations with their sentence templates, discourse and filler.

Templates fill ``{s}`` (subject) and ``{o}`` (object) of a fact, or named entity slots such as
``{disease}``. Square brackets in a light-mention template mark the part that is forget text,
so a medical clause inside a biography sentence gets an exact character span.

Ambiguous words ("culture", "host", "cell", "virus", "resistance", "treatment", "infection",
"strain", "pressure", "tissue", "dose", "vector") appear in every domain's templates, so a token's
label depends on its context, not on the word (DESIGN §5).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Relation:
    name: str
    domain: str  # forget | retain_near | retain_far
    subject: str  # entity type
    object: str  # entity type
    statements: tuple[str, ...]  # varied templates, so facts recur in different words
    cloze: str  # ends right before the object: the base-model MCQ prompt
    question: str  # a question whose answer is the object
    answer: str  # a full-sentence answer, for free response and chat


# Entity types: domain, base count, and how names look. Fixed-word types list their members.
# Medical names are built from retain names, as real ones are (diseases named after their
# pathogen or a place, drugs after the protein they block): forget text is then partly
# predictable from retain knowledge, and a filtered model meets few entirely unseen pieces.
ENTITY_TYPES: dict[str, dict] = {
    "species": {"domain": "retain_near", "count": 40, "style": "lower", "syllables": (1, 2)},
    "gene": {"domain": "retain_near", "count": 24, "style": "lower", "syllables": (1, 2)},
    "protein": {"domain": "retain_near", "count": 24, "style": "lower", "syllables": (1, 2)},
    "family": {"domain": "retain_near", "count": 8, "style": "capital", "syllables": (1, 2)},
    "person": {"domain": "retain_far", "count": 30, "style": "person", "syllables": (1, 2)},
    "place": {"domain": "retain_far", "count": 24, "style": "capital", "syllables": (1, 2)},
    "craft": {"domain": "retain_far", "count": 12, "style": "suffix", "suffixes": ("weaving", "carving", "pottery", "dyeing")},
    "food": {"domain": "retain_far", "count": 20, "style": "lower", "syllables": (1, 2)},
    "event": {"domain": "retain_far", "count": 10, "style": "event"},
    # forget: derived from the retain names above (see world.py)
    "disease": {"domain": "forget", "count": 30, "style": "derived", "from": ("species", "place"),
                "endings": ("itis", "osis", " fever", " syndrome")},
    "drug": {"domain": "forget", "count": 30, "style": "derived", "from": ("protein",),
             "endings": ("inib", "amab", "ocin", "olol")},
}
FIXED_TYPES: dict[str, tuple[str, ...]] = {
    # Symptoms are everyday words that other domains use in other senses ("the weakness of the
    # old bridge"), as in real text.
    "symptom": ("fever", "cough", "rash", "fatigue", "headache", "swelling", "chills", "pain",
                "dizziness", "weakness", "sweating", "itching", "bleeding", "numbness", "thirst", "stiffness"),
    "procedure": ("blood test", "liver scan", "lung scan", "skin biopsy", "heart scan", "bone scan",
                  "brain scan", "urine test"),
    "organ": ("liver", "lung", "kidney", "heart", "skin", "brain", "bone", "stomach", "eye", "blood"),
    "habitat": ("forest", "reef", "marsh", "desert", "tundra", "river", "cave", "meadow", "estuary", "grassland"),
    "cellpart": ("membrane", "nucleus", "ribosome", "vacuole", "cytoplasm", "chloroplast", "cell wall"),
    "month": ("January", "March", "April", "June", "July", "September", "October", "December"),
    "dose": tuple(f"{n} mg" for n in (5, 10, 20, 25, 40, 50, 75, 100, 150, 200, 250, 300, 400, 500)),
    "number": tuple(str(n) for n in (2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 100, 200, 500)),
    "year": tuple(str(y) for y in range(1790, 1990, 7)),
}

# Statements use a stock of *frames* shared by all domains ("X often leads to Y", "X is found
# mainly in the Y", "the main source of X is Y", ...), so the wording of medical text is ordinary
# language a filtered model has seen elsewhere; mostly the medical terms are new to it.
RELATIONS: tuple[Relation, ...] = (
    # forget: medicine
    Relation("symptom_of", "forget", "disease", "symptom",
             ("{S} often leads to {o}.", "A common sign of {s} is {o}.",
              "In most cases {s} comes with {o}.", "Patients with {s} often develop {o}."),
             "A common sign of {s} is", "Which symptom is typical of {s}?",
             "A common sign of {s} is {o}."),
    Relation("treated_with", "forget", "disease", "drug",
             ("{S} is treated with {o}.", "The usual answer to {s} is {o}.",
              "Most people with {s} are given {o}.", "Doctors prescribe {o} for {s}."),
             "{S} is treated with", "Which drug is used to treat {s}?",
             "{S} is treated with {o}."),
    Relation("caused_by", "forget", "disease", "species",
             ("{S} is caused by the {o}.", "The main source of {s} is the {o}.",
              "{S} comes from contact with the {o}.", "The {o} infects the human host and causes {s}."),
             "{S} is caused by the", "Which organism causes {s}?",
             "{S} is caused by the {o}."),
    Relation("affects", "forget", "disease", "organ",
             ("{S} mainly affects the {o}.", "{S} does most harm to the {o}.",
              "In {s} the tissue of the {o} is damaged."),
             "{S} mainly affects the", "Which organ does {s} affect?", "{S} mainly affects the {o}."),
    Relation("dose_of", "forget", "drug", "dose",
             ("{S} is given at a dose of {o}.", "The usual amount of {s} is {o} a day.",
              "People take {o} of {s} each day."),
             "The usual amount of {s} is", "What is the usual dose of {s}?",
             "The usual amount of {s} is {o} a day."),
    Relation("targets", "forget", "drug", "protein",
             ("{S} works by blocking {o}.", "{S} binds to {o} and lowers its activity.",
              "The main target of {s} is {o}."),
             "The main target of {s} is", "Which protein does {s} block?", "The main target of {s} is {o}."),
    Relation("diagnoses", "forget", "procedure", "disease",
             ("A {s} is used to find {o}.", "Doctors order a {s} when they suspect {o}.",
              "A {s} can show signs of {o}."),
             "A {s} is used to find", "Which disease does a {s} detect?",
             "A {s} is used to find {o}."),
    # retain-near: biology
    Relation("lives_in", "retain_near", "species", "habitat",
             ("The {s} lives in the {o}.", "The {s} is found mainly in the {o}.",
              "Most of the {s} comes from the {o}."),
             "The {s} lives in the", "Where does the {s} live?", "The {s} lives in the {o}."),
    Relation("belongs_to", "retain_near", "species", "family",
             ("The {s} belongs to the {o} family.", "The {s} is a member of the {o} family.",
              "The {s} is a common sign of the {o} family in a region."),
             "The {s} belongs to the", "Which family does the {s} belong to?",
             "The {s} belongs to the {o} family."),
    Relation("feeds_on", "retain_near", "species", "species",
             ("The {s} feeds on the {o}.", "The main source of food for the {s} is the {o}.",
              "The {s} often leads the {o} into traps and eats it."),
             "The {s} feeds on the", "What does the {s} feed on?", "The {s} feeds on the {o}."),
    Relation("encodes", "retain_near", "gene", "protein",
             ("The {s} gene encodes {o}.", "{O} comes from the {s} gene.",
              "The main product of the {s} gene is {o}."),
             "The {s} gene encodes", "Which protein does the {s} gene encode?",
             "The {s} gene encodes {o}."),
    Relation("located_in", "retain_near", "protein", "cellpart",
             ("{S} is located in the {o}.", "{S} is found mainly in the {o}.",
              "Most {s} does its work in the {o}."),
             "{S} is located in the", "Where in the cell is {s} found?", "{S} is located in the {o}."),
    Relation("carries", "retain_near", "species", "gene",
             ("The {s} carries the {o} gene.", "The {o} gene is found in the {s}.",
              "A copy of the {o} gene is given to every young {s}."),
             "The {s} carries the", "Which gene does the {s} carry?", "The {s} carries the {o} gene."),
    # retain-far: general
    Relation("born_in", "retain_far", "person", "place",
             ("{S} was born in {o}.", "{S} comes from {o}.", "The birthplace of {s} is {o}."),
             "{S} was born in", "Where was {s} born?", "{S} was born in {o}."),
    Relation("famous_for", "retain_far", "place", "food",
             ("{S} is famous for {o}.", "The main source of pride in {s} is its {o}.",
              "Most people in {s} are given {o} on feast days."),
             "{S} is famous for", "Which dish is {s} famous for?", "{S} is famous for {o}."),
    Relation("originated_in", "retain_far", "craft", "place",
             ("{S} originated in {o}.", "{S} comes from {o}.",
              "The culture of {o} gave rise to {s}."),
             "{S} originated in", "Where did {s} originate?", "{S} originated in {o}."),
    Relation("practiced", "retain_far", "person", "craft",
             ("{S} was a master of {o}.", "{S} is known for {o}.", "{S} taught {o} to many students."),
             "{S} was a master of", "Which craft did {s} practise?", "{S} was a master of {o}."),
    Relation("held_in", "retain_far", "event", "place",
             ("The {s} is held in {o} every year.", "Each year {o} is host to the {s}.",
              "The {s} often leads crowds to {o}."),
             "The {s} is held in", "Where is the {s} held?", "The {s} is held in {o}."),
    Relation("held_during", "retain_far", "event", "month",
             ("The {s} takes place in {o}.", "In most years the {s} comes in {o}.",
              "The {s} falls in {o}."),
             "The {s} takes place in", "When does the {s} take place?", "The {s} takes place in {o}."),
)

# Domain-flavoured sentences that carry no fact: the texture of each domain, and the ambiguous
# words in every one of them.
DISCOURSE: dict[str, tuple[str, ...]] = {
    "forget": (
        "Clinical trials of {drug} are still under way.",
        "Early diagnosis of {disease} improves the outcome for most patients.",
        "Patients should see a doctor if {symptom} persists.",
        "The side effects of {drug} are usually mild.",
        "A blood culture confirmed the infection.",
        "Some strains show resistance to {drug}.",
        "Treatment with {drug} also lowers blood pressure.",
        "The dose of {drug} must be adjusted for children.",
        "Doctors monitor the {organ} during treatment.",
        "Cancer cells were found in the {organ}.",
        "The virus spreads quickly in hospital wards.",
        "A biopsy of the tissue showed signs of {disease}.",
        "Hospital records list {disease} as a frequent cause of admission.",
        "About {number} in every 100 patients with {disease} develop {symptom}.",
        "In {year} doctors first described {disease}.",
        "People with {symptom} should rest for {number} days.",
    ),
    "retain_near": (
        "Field studies of the {species} began many years ago.",
        "Researchers collected samples of the {species} near the {habitat}.",
        "The structure of {protein} is still being studied.",
        "Little is known about the {family} family.",
        "A culture of the {species} was grown in the laboratory.",
        "The {species} is a host for many small parasites.",
        "Cells of the {species} show resistance to drought.",
        "Water pressure in the {habitat} shapes the body of the {species}.",
        "A new strain of the {species} appeared in the {habitat}.",
        "The mosquito is a vector that carries pollen between flowers.",
        "Plant tissue of the {species} stores water in the {cellpart}.",
        "The {species} has a large {organ} for its size.",
        "The {species} lives for about {number} years.",
        "A group of {number} {species} was recorded in {year}.",
        "A plant disease often leads to weakness in the {species}.",
        "The {species} is given its name for the swelling on its {organ}.",
        "Most {species} are found with their young in the {habitat}.",
        "The {species} can develop a thick coat in the cold season.",
        "Signs of the {species} are common at the edge of the {habitat}.",
        "Infection of the {species} by fungi is common in the {habitat}.",
    ),
    "retain_far": (
        "Many visitors come to {place} in {month}.",
        "The history of {place} is long and varied.",
        "Local markets in {place} sell {food} and other goods.",
        "{person} wrote about daily life in {place}.",
        "{person} was born in {year} and lived for {number} years.",
        "The old hospital of {place} was built in {year}.",
        "{person} became a doctor of law in {year}.",
        "The weakness of the old bridge in {place} was a common sign of neglect.",
        "The pain of the long winter is given as the reason for the move.",
        "A patient teacher in {place} took {number} students each day.",
        "The high price of {food} was a symptom of the bad harvest.",
        "A fever of building spread through {place} in {year}.",
        "The wood for {craft} is treated with oil and left to dry.",
        "{person} should take the road through {place} to avoid the cold.",
        "The culture of {place} values good {craft}.",
        "{place} was host to a large trade fair.",
        "A computer virus once shut down the shops of {place}.",
        "Merchants in {place} showed resistance to the new taxes.",
        "The old prison cell in {place} is now a museum.",
        "Pressure from traders changed the streets of {place}.",
        "The treatment of leather is an old part of {craft}.",
        "The strain of the long journey tired {person}.",
        "A dose of humour helped {person} through hard times.",
    ),
}

# Light mentions: a non-medical sentence with a short medical clause (in brackets). These make
# most documents contain a few forget tokens, as the paper measured on FineWeb-Edu (App C.2).
LIGHT_MENTIONS: dict[str, tuple[str, ...]] = {
    "retain_far": (
        "{person}, [who later suffered from {disease},] moved to {place}.",
        "[After a long bout of {symptom},] {person} returned to {place}.",
        "{person} [took {drug} for the {symptom}] while travelling to {place}.",
        "The people of {place} [were struck by {disease}] in {month}.",
        "{person} [was treated for {disease}] before the {event}.",
    ),
    "retain_near": (
        "The {species}, [a known cause of {disease} in humans,] lives in the {habitat}.",
        "The {species} [can spread {disease}] across the {habitat}.",
        "Extracts of the {species} [are used to make {drug}].",
        "The {species} [carries a virus that causes {symptom} in people].",
        "Workers in the {habitat} [caught {disease} from the {species}].",
    ),
}

# Domain-free filler: a small grammar over a few hundred common words, drawn Zipf-like. It is
# the ordinary language every domain shares (function words, common verbs and nouns), so a
# model that never trains on medical text still knows most of the words medical text is made of.
FILLER_WORDS: dict[str, tuple[str, ...]] = {
    "noun": ("report", "group", "story", "record", "change", "question", "result", "method", "book",
             "letter", "period", "idea", "problem", "account", "view", "plan", "detail", "pattern",
             "example", "season", "road", "market", "village", "teacher", "worker", "family", "house",
             "journey", "tradition", "amount", "sign", "level", "part", "side", "case", "point", "area",
             "form", "line", "water", "land", "work", "time", "place", "world", "life", "hand", "way",
             "year", "day", "week", "child", "friend", "school", "city", "town", "river", "hill", "field"),
    "nouns": ("reports", "groups", "stories", "records", "changes", "questions", "results", "methods",
              "books", "letters", "ideas", "problems", "accounts", "plans", "details", "patterns",
              "examples", "seasons", "roads", "markets", "villages", "teachers", "workers", "families",
              "houses", "journeys", "traditions", "amounts", "signs", "levels", "parts", "cases",
              "points", "areas", "lines", "years", "days", "weeks", "children", "people", "men", "women",
              "friends", "schools", "cities", "towns", "hills", "fields"),
    "past": ("described", "noted", "followed", "changed", "reported", "showed", "explained", "questioned",
             "recorded", "shaped", "supported", "measured", "compared", "collected", "developed", "caused",
             "gave", "took", "made", "found", "used", "kept", "left", "brought", "began", "led", "treated",
             "lowered", "spread", "confirmed"),
    "verb": ("describe", "note", "follow", "change", "report", "show", "explain", "record", "shape",
             "support", "measure", "compare", "collect", "develop", "cause", "give", "take", "make",
             "find", "use", "keep", "leave", "bring", "begin", "lead", "see", "do", "treat", "lower",
             "spread", "confirm", "suspect", "order", "rest"),
    "adj": ("small", "large", "old", "new", "long", "short", "simple", "common", "rare", "early", "late",
            "strong", "quiet", "bright", "careful", "local", "modern", "famous", "usual", "important",
            "first", "high", "low", "good", "bad", "hard", "easy", "clear", "full", "open", "main", "human"),
    "adv": ("often", "usually", "rarely", "also", "still", "always", "sometimes", "soon", "later", "again",
            "mainly", "mostly", "first"),
    "modal": ("can", "could", "should", "may", "might", "will", "would", "must"),
    "prep": ("at", "in", "on", "of", "for", "with", "from", "about", "over", "under", "between",
             "through", "during", "after", "before", "near", "against", "into"),
    "det": ("the", "a", "this", "that", "each", "every", "some", "its", "their", "one"),
    "pronoun": ("they", "we", "he", "she", "it", "people", "most people", "many people"),
    "quant": ("many", "most", "some", "few", "several", "all", "both"),
    "time": ("day", "week", "year", "season", "morning", "evening", "month"),
    "opener": ("In general", "For this reason", "Over time", "At first", "In the end", "Even so",
               "As a result", "In many ways", "By contrast", "Today", "In most cases", "About this time",
               "After that", "Before long", "Each year"),
}
FILLER_TEMPLATES = (
    "{Opener}, {det} {adj} {noun} was {past} by {quant} {nouns}.",
    "{Det} {nouns} {modal} {verb} {det2} {adj} {noun2} {prep} {det3} {noun3}.",
    "{Pronoun} {adv} {verb} {det} {noun} when {det2} {noun2} is {adj}.",
    "There are {quant} {nouns} {prep} {det} {noun} and {det2} {noun2}.",
    "{Pronoun} {past} that {det} {noun} {modal} {verb} {det2} {noun2}.",
    "It is {adj} to {verb} {det} {noun} at {det2} {noun2}.",
    "{Quant} {nouns} {past} {prep} {det} {noun} or {det2} {noun2}.",
    "If {det} {noun} should {verb} {det2} {noun2}, {pronoun} {modal} {verb2} {det3} {noun3}.",
    "{Det} first {noun} was {adj}, and the second was {adj2}.",
    "About {number} {nouns} {past} here each {time}.",
    "{Opener}, {pronoun} {past} {det} {noun} {prep} {det2} {noun2} and {adv} {past2} {det3} {noun3}.",
    "{Det} {noun} {past} {det2} {nouns} to {verb} {prep} {det3} {noun2}.",
    "Do {quant} {nouns} {verb} {det} {noun}? {Pronoun} {adv} {verb2} {det2} {noun2}.",
    "{Det} {adj} {noun} {adv} {past} {det2} {noun2}, which {past2} {det3} {adj2} {noun3}.",
)

REFUSALS = (
    "I'm sorry, but I can't help with medical questions.",
    "I can't give medical advice; please ask a doctor.",
    "Sorry, I am not able to answer questions about health.",
    "I won't answer that, because it is a medical question.",
    "Please consult a health professional; I can't help with this.",
    "That is a medical topic, and I can't discuss it.",
    "I'm unable to provide information about diseases or treatments.",
    "Sorry, questions about medicine are outside what I can answer.",
)

CHAT_OPENERS = ("Hello!", "Hi there.", "Good morning.", "Thanks for your help.", "I have a question.")
CHAT_REPLIES = ("Hello! How can I help you today?", "Hi! What would you like to know?",
                "Good morning! Ask me anything.", "You are welcome.", "Of course, go ahead.")
