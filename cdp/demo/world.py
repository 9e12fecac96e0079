"""The demo brand's fixed world: the dates its history spans (fixed, so a seed always gives the
same files), street and email names, junk values, product categories, brands and stores."""

from __future__ import annotations

import datetime as dt

from cdp.stages.sources.standardize import US_STATES


END_DATE = dt.date(2026, 10, 31)  # fixed so a seed always gives the same files
HISTORY_DAYS = 3 * 365

STREET_SUFFIXES = [("Street", "St"), ("Avenue", "Ave"), ("Road", "Rd"), ("Drive", "Dr"),
                   ("Lane", "Ln"), ("Court", "Ct"), ("Boulevard", "Blvd"), ("Place", "Pl"),
                   ("Terrace", "Ter"), ("Way", "Way")]
EMAIL_DOMAINS = ["gmail.com"] * 8 + ["yahoo.com"] * 3 + ["outlook.com"] * 2 + [
    "hotmail.com", "icloud.com", "aol.com", "comcast.net", "proton.me"]
AREA_CODES = ["212", "213", "214", "215", "303", "305", "312", "313", "404", "407", "415",
              "503", "512", "602", "608", "612", "617", "702", "704", "713", "720", "773",
              "801", "813", "818", "858", "907", "916", "919", "971"]
JUNK_EMAILS = ["test@test.com", "none@none.com", "noemail@example.com"]
JUNK_PHONES = ["000-000-0000", "999-999-9999", "111-111-1111"]
TREES = ["Oak", "Maple", "Cedar", "Pine", "Elm", "Birch", "Walnut", "Willow", "Chestnut", "Spruce",
         "Hickory", "Aspen", "Magnolia", "Sycamore", "Dogwood", "Laurel", "Juniper", "Poplar"]
COUNTRY_SPELLINGS = ["US"] * 6 + ["USA", "United States", "us"]

CATEGORIES = {
    "Bakery": (["Sourdough Loaf", "Whole Wheat Bread", "Bagels", "Croissants", "Rye Bread",
                "Baguette", "Muffins", "Cinnamon Rolls"], (2.5, 7.0)),
    "Soft Drinks": (["Cola", "Lemon Soda", "Ginger Ale", "Root Beer", "Sparkling Water",
                     "Orange Soda", "Iced Tea"], (1.0, 6.0)),
    "Dairy": (["Whole Milk", "Greek Yogurt", "Cheddar Cheese", "Butter", "Cream Cheese",
               "Mozzarella"], (1.5, 8.0)),
    "Produce": (["Bananas", "Apples", "Avocados", "Spinach", "Tomatoes", "Strawberries",
                 "Carrots"], (1.0, 6.0)),
    "Snacks": (["Potato Chips", "Pretzels", "Trail Mix", "Granola Bars", "Popcorn",
                "Tortilla Chips"], (2.0, 6.5)),
    "Frozen": (["Frozen Pizza", "Ice Cream", "Frozen Peas", "Fish Sticks", "Waffles"], (3.0, 9.0)),
    "Meat & Seafood": (["Chicken Breast", "Ground Beef", "Salmon Fillet", "Bacon", "Pork Chops"],
                       (5.0, 18.0)),
    "Household": (["Paper Towels", "Dish Soap", "Laundry Detergent", "Trash Bags", "Sponges"],
                  (3.0, 15.0)),
    "Personal Care": (["Shampoo", "Toothpaste", "Body Wash", "Deodorant", "Hand Soap"],
                      (2.5, 12.0)),
    "Pantry": (["Pasta", "Olive Oil", "Rice", "Peanut Butter", "Coffee Beans", "Cereal",
                "Tomato Sauce"], (1.5, 14.0)),
}
BRANDS = ["Harvest Lane", "Blue Ridge", "Golden Acre", "Northfield", "Sunny Valley", "Crestwood",
          "Maple & Co", "Brightside", "Evergreen", "Riverbend"]
STORES = [f"S{n:03d}" for n in range(1, 13)]
MONTH_WEIGHT = {1: 0.8, 2: 0.8, 3: 0.9, 4: 0.9, 5: 1.0, 6: 1.0, 7: 1.0, 8: 1.0, 9: 0.9,
                10: 1.0, 11: 1.4, 12: 1.8}

STATE_NAME = {abbr: name.title() for name, abbr in US_STATES.items()}  # 'MA' -> 'Massachusetts'
