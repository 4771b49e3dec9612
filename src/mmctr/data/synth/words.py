"""Title vocabulary of the synthetic world: one hand-written list of real English words per topic.

The lists share no word, so a sentence encoder (or even a bag of words) can read an item's topic
from its title; titles carry nothing about the item's visual style.
"""

from __future__ import annotations

import numpy as np

# fmt: off
TOPIC_WORDS: dict[str, tuple[str, ...]] = {
    "cooking": ("recipe", "kitchen", "noodles", "bake", "dumplings", "soup", "chef", "spicy", "bread",
                "sauce", "fried", "rice", "dessert", "oven", "garlic", "steak", "breakfast", "cake"),
    "travel": ("beach", "mountain", "hotel", "island", "trip", "journey", "passport", "airport",
               "backpacking", "sunset", "cruise", "resort", "hiking", "tourist", "village", "temple",
               "roadtrip", "luggage"),
    "pets": ("puppy", "kitten", "dog", "cat", "hamster", "parrot", "paws", "fluffy", "leash", "vet",
             "bunny", "adopted", "meow", "fetch", "kennel", "purring", "tail", "goldfish"),
    "gaming": ("gameplay", "boss", "level", "console", "multiplayer", "speedrun", "controller", "quest",
               "loot", "respawn", "arcade", "esports", "headshot", "ranked", "dungeon", "pixel",
               "walkthrough", "checkpoint"),
    "fitness": ("workout", "gym", "squat", "cardio", "muscle", "pushups", "abs", "stretching", "protein",
                "treadmill", "dumbbell", "plank", "sweat", "burpees", "deadlift", "yoga", "lunges",
                "endurance"),
    "music": ("guitar", "piano", "song", "concert", "melody", "drums", "singer", "lyrics", "cover",
              "violin", "chorus", "album", "band", "rhythm", "acoustic", "karaoke", "orchestra", "remix"),
    "dance": ("choreography", "ballet", "hiphop", "salsa", "tango", "breakdance", "dancer", "moves",
              "routine", "spin", "waltz", "twerk", "freestyle", "tutu", "footwork", "groove", "shuffle",
              "flashmob"),
    "fashion": ("outfit", "dress", "jacket", "sneakers", "style", "runway", "denim", "handbag", "scarf",
                "boutique", "wardrobe", "heels", "streetwear", "tailored", "vintage", "lookbook",
                "accessories", "skirt"),
    "beauty": ("makeup", "lipstick", "skincare", "eyeliner", "foundation", "mascara", "blush", "serum",
               "moisturizer", "nails", "manicure", "contour", "eyeshadow", "haircut", "curls", "facial",
               "perfume", "glowing"),
    "tech": ("smartphone", "laptop", "unboxing", "gadget", "processor", "charger", "headphones",
             "keyboard", "tablet", "camera", "battery", "specs", "benchmark", "drone", "smartwatch",
             "monitor", "wireless", "firmware"),
    "cars": ("engine", "turbo", "sedan", "racing", "drift", "horsepower", "garage", "tires", "mechanic",
             "motorcycle", "exhaust", "supercar", "gearbox", "dashboard", "highway", "convertible",
             "torque", "pickup"),
    "comedy": ("prank", "funny", "joke", "sketch", "hilarious", "parody", "laugh", "standup", "comedian",
               "blooper", "silly", "roast", "meme", "impression", "awkward", "punchline", "giggle",
               "satire"),
    "education": ("lesson", "math", "physics", "chemistry", "lecture", "homework", "exam", "teacher",
                  "student", "history", "grammar", "vocabulary", "equation", "science", "tutorial",
                  "classroom", "biology", "geometry"),
    "sports": ("football", "basketball", "soccer", "tennis", "goal", "dribble", "stadium", "referee",
               "championship", "slamdunk", "penalty", "athlete", "baseball", "volleyball", "coach",
               "tournament", "striker", "rebound"),
    "nature": ("forest", "river", "waterfall", "wildlife", "flowers", "birds", "meadow", "ocean",
               "rainforest", "canyon", "glacier", "butterfly", "lake", "volcano", "desert", "moss",
               "thunderstorm", "sunrise"),
    "family": ("baby", "toddler", "parents", "mom", "dad", "grandma", "siblings", "newborn", "twins",
               "birthday", "daughter", "son", "nursery", "bedtime", "diapers", "cousins", "reunion",
               "lullaby"),
    "crafts": ("origami", "knitting", "sewing", "handmade", "crochet", "embroidery", "pottery", "clay",
               "scissors", "glue", "beads", "quilt", "woodworking", "candle", "scrapbook", "yarn",
               "stitch", "weaving"),
    "art": ("painting", "sketchbook", "watercolor", "canvas", "portrait", "drawing", "brush", "mural",
            "gallery", "acrylic", "charcoal", "illustration", "sculpture", "easel", "calligraphy",
            "graffiti", "palette", "masterpiece"),
    "finance": ("money", "investing", "stocks", "budget", "savings", "crypto", "dividend", "salary",
                "mortgage", "taxes", "wealth", "trading", "bitcoin", "portfolio", "debt", "inflation",
                "bank", "retirement"),
    "gardening": ("garden", "seeds", "soil", "tomatoes", "compost", "harvest", "succulent", "watering",
                  "pruning", "greenhouse", "sprouts", "fertilizer", "orchard", "herbs", "planting",
                  "weeds", "cactus", "bonsai"),
    "home": ("apartment", "decor", "cleaning", "furniture", "sofa", "renovation", "organizing",
             "bedroom", "laundry", "curtains", "shelves", "makeover", "cozy", "minimalist", "vacuum",
             "closet", "tiles", "interior"),
    "food_review": ("mukbang", "restaurant", "burger", "pizza", "sushi", "buffet", "tasting", "snacks",
                    "streetfood", "hotpot", "ramen", "delicious", "menu", "takeout", "barbecue",
                    "milkshake", "foodie", "bakery"),
    "movies": ("trailer", "actor", "scene", "cinema", "review", "director", "sequel", "spoiler", "plot",
               "blockbuster", "animation", "superhero", "premiere", "netflix", "villain", "oscar",
               "screenplay", "soundtrack"),
    "science_fun": ("experiment", "slime", "chemicals", "magnets", "rocket", "lab", "robot",
                    "telescope", "planets", "dinosaur", "fossils", "microscope", "explosion", "crystals",
                    "laser", "astronaut", "galaxy", "circuit"),
}

# Generic words that say nothing about the topic; every title gets a few.
FILLER_WORDS: tuple[str, ...] = (
    "my", "today", "best", "video", "new", "vlog", "first", "time", "the", "ultimate", "easy", "quick",
    "day", "with", "and", "how", "to", "top", "ten", "amazing", "part", "try", "week", "episode",
)
# fmt: on

TOPIC_NAMES: tuple[str, ...] = tuple(TOPIC_WORDS)
N_TOPICS = len(TOPIC_NAMES)


def make_titles(topics: np.ndarray, rng: np.random.Generator, topic_share: float = 0.75) -> list[str]:
    """One title per item: 3-8 words, each from the item's topic list with probability
    `topic_share`, else a filler word. At least two topic words, so every title is readable."""
    n = len(topics)
    word_lists = [np.array(TOPIC_WORDS[name]) for name in TOPIC_NAMES]
    filler = np.array(FILLER_WORDS)
    lengths = rng.integers(3, 9, size=n)
    is_topic = rng.random((n, 8)) < topic_share
    is_topic[:, :2] = True  # the first two slots are shuffled below, so topic words can land anywhere
    max_words = max(len(w) for w in word_lists)
    topic_perm = rng.random((n, max_words)).argsort(axis=1)  # topic words without repeats
    filler_pick = rng.integers(0, len(filler), size=(n, 8))
    order = rng.random((n, 8)).argsort(axis=1)
    titles: list[str] = []
    # A loop per item (not per row) is cheap: 92k items at full scale take well under a second.
    for i in range(n):
        words_i = word_lists[topics[i]]
        perm = iter(topic_perm[i][topic_perm[i] < len(words_i)])
        slots = order[i][order[i] < lengths[i]]  # a random order of slots 0..k-1; 0 and 1 are topic words
        words = [words_i[next(perm)] if is_topic[i, s] else filler[filler_pick[i, s]] for s in slots]
        titles.append(" ".join(words))
    return titles
